// The bundled deepseek-v4 rules through the real binary on a generated official V4 checkpoint:
// --expert-dtype as a choice (help, bad values), conversion and verify with both choices, and the
// mp at which wo_a cannot be split refused with the numbers.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::run_command;
using shardwise::test::shardwise_binary;
using shardwise::test::TempDir;

namespace {

// A small V4 checkpoint: 4 experts per MoE, wo_a [1024, 512] (8 blocks of 128 rows).
fs::path generate_v4(const TempDir& dir) {
  const fs::path in = dir / "in";
  shardwise::test::generate_official_checkpoint(
      in, {"--format", "v4", "--experts", "4", "--files", "2", "--index"});
  return in;
}

TEST_CASE("deepseek-v4: --expert-dtype is a choice, listed in --help, a bad value a usage error") {
  // Without --rules the help lists it among each bundled file's parameters (and as a flag: the rules
  // are chosen from the checkpoint); with --rules deepseek-v4 it is a flag of its own, with its
  // choices and default.
  const auto help = run_command({shardwise_binary(), "convert", "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find(
            "--rules deepseek-v4: --n-experts UINT (required), --expert-dtype fp4|fp8 (default: fp4)") !=
        std::string::npos);
  const auto named = run_command({shardwise_binary(), "convert", "--rules", "deepseek-v4", "--help"});
  CHECK(named.exit_code == 0);
  CHECK(named.out.find("--expert-dtype fp4|fp8") != std::string::npos);
  CHECK(named.out.find("(default: fp4)") != std::string::npos);

  TempDir dir;
  const fs::path in = generate_v4(dir);
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--expert-dtype", "fp16"},
                                              std::vector<std::string>{"-p", "expert_dtype=fp16"}}) {
    std::vector<std::string> argv = {shardwise_binary(), "plan", "--rules", "deepseek-v4", "-i",
                                     in.string(),        "-m",   "2",       "--n-experts", "4"};
    argv.insert(argv.end(), bad.begin(), bad.end());
    const auto result = run_command(argv);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find("--expert-dtype fp16: expected one of fp4, fp8") != std::string::npos);
  }
}

TEST_CASE("deepseek-v4: converts and verifies with --expert-dtype fp4 and fp8") {
  TempDir dir;
  const fs::path in = generate_v4(dir);
  for (const std::string dtype : {"fp4", "fp8"}) {
    INFO(dtype);
    const fs::path out = dir / ("out-" + dtype);
    const std::vector<std::string> common = {"--rules",          "deepseek-v4", "--hf-ckpt-path", in.string(),
                                             "--model-parallel", "4",           "--n-experts",    "4",
                                             "--expert-dtype",   dtype};
    std::vector<std::string> convert = {shardwise_binary(), "convert", "--save-path", out.string(),
                                        "--quiet"};
    convert.insert(convert.end(), common.begin(), common.end());
    const auto converted = run_command(convert);
    CHECK(converted.exit_code == 0);
    CHECK(fs::exists(out / "model3-mp4.safetensors"));
    CHECK(fs::exists(out / "tokenizer.json"));
    std::vector<std::string> verify = {shardwise_binary(), "verify", "-o", out.string(), "--quiet"};
    verify.insert(verify.end(), common.begin(), common.end());
    const auto verified = run_command(verify);
    CHECK(verified.exit_code == 0);
    std::vector<std::string> plan = {shardwise_binary(), "plan", "--format", "json"};
    plan.insert(plan.end(), common.begin(), common.end());
    const auto planned = run_command(plan);
    CHECK(planned.exit_code == 0);
    CHECK(planned.out.find("\"transform\": \"dequantize\"") != std::string::npos);
    CHECK(planned.out.find(dtype == "fp8" ? "\"transform\": \"requantize_fp4_weight\""
                                          : "\"reinterpret\": true") != std::string::npos);
  }
}

TEST_CASE("deepseek-v4: a changed --expert-dtype is named by its words in --resume's refusal and in verify") {
  TempDir dir;
  const fs::path in = generate_v4(dir);
  const fs::path out = dir / "out";
  const auto with = [&](std::vector<std::string> command, const std::string& dtype) {
    const std::vector<std::string> args = {"--rules",     "deepseek-v4", "--hf-ckpt-path",   in.string(),
                                           "--save-path", out.string(),  "--model-parallel", "2",
                                           "--n-experts", "4",           "--expert-dtype",   dtype,
                                           "--quiet"};
    command.insert(command.end(), args.begin(), args.end());
    return run_command(command);
  };
  REQUIRE(with({shardwise_binary(), "convert"}, "fp4").exit_code == 0);
  const auto resumed = with({shardwise_binary(), "convert", "--resume"}, "fp8");
  CHECK(resumed.exit_code != 0);
  CHECK(resumed.err.find("cannot resume: the parameter expert_dtype changed: fp4 -> fp8") !=
        std::string::npos);
  const auto verified = with({shardwise_binary(), "verify"}, "fp8");
  CHECK(verified.exit_code != 0);
  CHECK(verified.out.find("parameter expert_dtype is fp8 now, but fp4 in the manifest") != std::string::npos);
}

TEST_CASE("deepseek-v4: an mp at which wo_a's rows are not whole 128-row blocks is refused") {
  TempDir dir;
  const fs::path in = generate_v4(dir);
  const auto result = run_command({shardwise_binary(), "plan", "--rules", "deepseek-v4", "-i", in.string(),
                                   "-m", "16", "--n-experts", "16"});
  CHECK(result.exit_code == 4);
  CHECK(result.err.find("layers.0.attn.wo_a.weight on rank 1 (transform[wo_a-to-bf16] at "
                        "<bundled>/deepseek-v4.yaml:") != std::string::npos);
  CHECK(result.err.find(
            "rows 64-128 of 1024 (mp=16) are not a whole number of 128-row blocks of its block scale "
            "layers.0.attn.wo_a.scale") != std::string::npos);
}

}  // namespace
