// Rules chosen from the checkpoint: without --rules, each of DeepSeek's formats converts with the
// bundled rules it fits, byte for byte as with those rules named, and the choice is said on stderr;
// --rules of another format, a checkpoint no bundled rules fit and a command line that fits none
// of several are refused with the reasons, before anything is written.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "convert/fixture.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::folder_files;
using shardwise::test::run_shardwise;
using shardwise::test::run_tool;
using shardwise::test::TempDir;

namespace {

// A checkpoint of `format` ("v3", "v3.2", "v4": gen_official_checkpoint; "w4a16": gen_checkpoint)
// in dir/format, with a tiktoken.model beside it (which V3's converter copies, `*token*`).
fs::path generate(const TempDir& dir, const std::string& format) {
  const fs::path in = dir / format;
  const auto made =
      format == "w4a16"
          ? run_tool("gen_checkpoint", {"--out", in.string(), "--config", "tiny", "--files", "2"})
          : run_tool("gen_official_checkpoint",
                     {"--out", in.string(), "--format", format, "--experts", "4", "--files", "2", "--index"});
  REQUIRE(made.exit_code == 0);
  shardwise::test::write_file(in / "tiktoken.model", "tokens\n");
  return in;
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Format {
  std::string checkpoint;
  std::string rules;
  std::vector<std::string> args;  // besides input and output
};

}  // namespace

TEST_CASE(
    "without --rules, every DeepSeek format converts as with its rules named, the choice said on stderr") {
  TempDir dir;
  const std::vector<std::string> mp = {"--model-parallel", "2", "--n-experts", "4"};
  const Format formats[] = {
      {"v3", "deepseek-v3", mp},
      {"v3.2", "deepseek-v3.2", mp},
      {"v4", "deepseek-v4", mp},
      {"v4", "deepseek-v4", concat(mp, {"--expert-dtype", "fp8"})},
      {"w4a16", "deepseek-v4-w4a16", {"--model-parallel", "2", "--n-experts", "8"}},
      // fp8_cast_bf16.py's own flags: no --model-parallel, no parameters.
      {"v3", "fp8-cast-bf16", {}},
  };
  int run = 0;
  for (const Format& f : formats) {
    const fs::path in = fs::exists(dir / f.checkpoint) ? dir / f.checkpoint : generate(dir, f.checkpoint);
    INFO(f.rules << " " << f.args.size());
    const fs::path named = dir / ("named" + std::to_string(run)),
                   found = dir / ("found" + std::to_string(run));
    ++run;
    const std::vector<std::string> io = f.rules == "fp8-cast-bf16"
                                            ? std::vector<std::string>{"--input-fp8-hf-path", in.string()}
                                            : std::vector<std::string>{"--hf-ckpt-path", in.string()};
    const auto with = run_shardwise(
        concat(concat({"convert", "--rules", f.rules, "-o", named.string(), "-q"}, io), f.args));
    REQUIRE(with.exit_code == 0);
    const auto without = run_shardwise(concat(concat({"convert", "-o", found.string()}, io), f.args));
    INFO(without.err);
    REQUIRE(without.exit_code == 0);
    CHECK_THAT(without.err, Catch::StartsWith("shardwise: rules: " + f.rules + " (fits: "));
    CHECK(folder_files(found) == folder_files(named));
    if (f.rules == "deepseek-v3") CHECK(fs::exists(found / "tiktoken.model"));
    // verify and plan choose the same rules; --quiet keeps the notice off stderr.
    const auto verified = run_shardwise(concat(concat({"verify", "-o", found.string(), "-q"}, io), f.args));
    CHECK(verified.exit_code == 0);
    CHECK(verified.err.empty());
    const auto planned = run_shardwise(concat(concat({"plan"}, io), f.args));
    CHECK(planned.exit_code == 0);
    CHECK_THAT(planned.out, Catch::Contains("<bundled>/" + f.rules + ".yaml"));
  }
}

TEST_CASE(
    "convert with --rules of another format is refused naming the rules that fit, before any output folder "
    "exists") {
  TempDir dir;
  struct Case {
    std::string checkpoint, rules, fits;
  };
  const Case cases[] = {
      {"v4", "deepseek-v4-w4a16", "It fits deepseek-v4: give --rules deepseek-v4"},
      {"v4", "fp8-cast-bf16", "It fits deepseek-v4: give --rules deepseek-v4"},
      {"v3", "deepseek-v4-w4a16", "It fits deepseek-v3 and fp8-cast-bf16"},
      {"v3", "deepseek-v3.2", "It fits deepseek-v3 and fp8-cast-bf16"},
      {"v3.2", "deepseek-v3", "It fits deepseek-v3.2 and fp8-cast-bf16"},
      {"w4a16", "deepseek-v4", "It fits deepseek-v4-w4a16: give --rules deepseek-v4-w4a16"},
  };
  for (const Case& c : cases) {
    INFO(c.checkpoint << " under " << c.rules);
    const fs::path in = fs::exists(dir / c.checkpoint) ? dir / c.checkpoint : generate(dir, c.checkpoint);
    const fs::path out = dir / "out";
    std::vector<std::string> args = {"convert", "--rules", c.rules, "-i", in.string(), "-o", out.string()};
    if (c.rules != "fp8-cast-bf16") args = concat(args, {"-m", "2", "--n-experts", "4"});
    const auto refused = run_shardwise(args);
    CHECK(refused.exit_code == 3);
    CHECK_THAT(refused.err,
               Catch::Contains("the checkpoint is not what the rules " + c.rules + " accept: it "));
    CHECK_THAT(refused.err, Catch::Contains(c.fits));
    CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE(
    "a checkpoint no bundled rules fit is refused with each file's reasons, and so is a command line that "
    "suits "
    "none of those that fit") {
  TempDir dir;
  const fs::path in = dir / "fp8-without-scales";
  fs::create_directories(in);
  shardwise::test::write_file(
      in / "model.safetensors",
      shardwise::test::build_safetensors({{"layers.0.proj.weight", "F8_E4M3", {2, 2}, "\x38\x40\x38\x40"}}));
  const fs::path out = dir / "out";
  const auto none =
      run_shardwise({"convert", "-i", in.string(), "-o", out.string(), "-m", "2", "--n-experts", "4"});
  CHECK(none.exit_code == 4);
  CHECK_THAT(none.err, Catch::Contains("no bundled rules fit this checkpoint"));
  CHECK_THAT(none.err, Catch::Contains("\n  deepseek-v3: needs V3 attention under HF names: no tensor is "));
  CHECK_THAT(none.err, Catch::Contains("\n  deepseek-v4-w4a16: needs DeepSeek-V4 attention (attn.wq_a, or "
                                       "self_attn.q_a_proj under HF names): no tensor is "));
  CHECK_THAT(none.err, Catch::Contains("; refuses FP8 weights: layers.0.proj.weight (F8_E4M3)\n"));
  CHECK_FALSE(fs::exists(out));

  const fs::path v3 = generate(dir, "v3");
  const auto unclear = run_shardwise({"convert", "-i", v3.string(), "-o", out.string(), "--n-experts", "4"});
  CHECK(unclear.exit_code == 3);
  CHECK_THAT(unclear.err,
             Catch::Contains("this checkpoint fits deepseek-v3, fp8-cast-bf16, but the command line "
                             "suits none of them: give --rules NAME"));
  CHECK_THAT(unclear.err, Catch::Contains("\n  fp8-cast-bf16: takes no --n-experts"));
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("without --rules, every bundled file's parameters are flags, checked against the rules chosen") {
  const auto help = run_shardwise({"convert", "--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("--expert-dtype fp4|fp8"));
  CHECK_THAT(help.out, Catch::Contains("(a parameter of deepseek-v4; default: fp4)"));

  TempDir dir;
  const fs::path w4a16 = generate(dir, "w4a16");
  const auto wrong =
      run_shardwise({"plan", "-i", w4a16.string(), "-m", "2", "--n-experts", "8", "--expert-dtype", "fp8"});
  CHECK(wrong.exit_code == 2);
  CHECK_THAT(wrong.err,
             Catch::Contains("--expert-dtype is not a parameter of the rules deepseek-v4-w4a16 (it is one "
                             "of deepseek-v4: --rules chooses them)"));
}

TEST_CASE("rules check prints what the rules accept and refuses a bad accepts: at FILE:LINE:COL") {
  const auto checked = run_shardwise({"rules", "check", "deepseek-v4"});
  CHECK(checked.exit_code == 0);
  CHECK_THAT(checked.out,
             Catch::Contains("  accepts: requires FP8 weights, E8M0 block scales; forbids F32 block "
                             "scales weight_scale_inv (DeepSeek-V3's format), GPTQ packing (W4A16)\n"));
  TempDir dir;
  const fs::path bad = dir / "bad.yaml";
  shardwise::test::write_file(bad,
                              "shardwise: 1\nextends: deepseek-v4\nname: bad\naccepts:\n  require:\n"
                              "    - {match: '(', dtype: [F8]}\n");
  const auto refused = run_shardwise({"rules", "check", bad.string()});
  CHECK(refused.exit_code == 3);
  CHECK_THAT(refused.err,
             Catch::Contains(bad.string() + ":6:15: invalid regex '(' in condition of accepts.require"));
  CHECK_THAT(refused.err,
             Catch::Contains(bad.string() + ":6:28: unknown dtype 'F8' in 'dtype' of condition of "
                                            "accepts.require"));
}
