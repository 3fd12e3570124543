// `shardwise verify` through the real binary: exit codes, what goes to stdout and stderr, and the
// options shared with plan/convert.
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support/support.hpp"
#include "verify/verify_fixture.hpp"

namespace shardwise::test {
namespace {

CommandResult verify(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {shardwise_binary(), "verify", "--hf-ckpt-path", tiny_mp4().input,
                                   "--save-path",      out,      "--n-experts",    "8",
                                   "--model-parallel", "4"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_command(argv);
}

CommandResult verify_manifest_only(const std::string& out) {
  return run_command({shardwise_binary(), "verify", "--manifest-only", "--save-path", out, "--quiet"});
}

TEST_CASE("cli: the intact output verifies with exit 0 and a summary") {
  const CommandResult r = verify(tiny_mp4().output, {"--threads", "2"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::StartsWith("verified 4 files ("));
  CHECK_THAT(r.out, Catch::Contains("tensors) and 2 side files, manifest consistent: "));
  CHECK_THAT(r.out, Catch::EndsWith("2 threads)\n"));

  const CommandResult quiet = verify(tiny_mp4().output, {"--quiet"});
  CHECK(quiet.exit_code == 0);
  CHECK(quiet.out.empty());
  CHECK(quiet.err.empty());

  const CommandResult m = verify_manifest_only(tiny_mp4().output);
  CHECK(m.exit_code == 0);
  CHECK(m.out.empty());
}

TEST_CASE("cli: damage gives exit 6, every mismatch on stdout, the summary on stderr") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  std::map<std::string, std::uint64_t> at;
  read_tensors(out + "/model1-mp4.safetensors", &at);
  flip_byte(out + "/model1-mp4.safetensors", at.at("layers.0.attn.wq_b.qweight") + 3);
  const std::string rank2 = out + "/model2-mp4.safetensors";
  fs::resize_file(rank2, fs::file_size(rank2) - 1);
  fs::remove(out + "/model3-mp4.safetensors");
  write_file(out + "/model0-mp4.safetensors", build_safetensors([&] {
               auto tensors = read_tensors(out + "/model0-mp4.safetensors");
               tensors.push_back({"extra.weight", "BF16", {4}, std::string(8, '\0')});
               return tensors;
             }()));
  fs::remove(out + "/tokenizer.json");

  const CommandResult r = verify(out, {"--quiet"});
  CHECK(r.exit_code == 6);
  const std::vector<std::string> prefixes = {
      "model0-mp4.safetensors: extra.weight: unexpected tensor (not in the plan): BF16 [4]",
      "model1-mp4.safetensors: layers.0.attn.wq_b.qweight: bytes differ from source slice dim1[128:256] of "
      "layers.0.attn.wq_b.qweight in model.safetensors (expected xxh3 ",
      "model2-mp4.safetensors: not a valid safetensors file: ",
      "model3-mp4.safetensors: missing (planned: ",
      "tokenizer.json: missing side file",
  };
  std::vector<std::string> lines;
  for (std::size_t from = 0, nl; (nl = r.out.find('\n', from)) != std::string::npos; from = nl + 1) {
    lines.push_back(r.out.substr(from, nl - from));
  }
  REQUIRE(lines.size() == prefixes.size());
  for (std::size_t i = 0; i < lines.size(); ++i) CHECK_THAT(lines[i], Catch::StartsWith(prefixes[i]));
  CHECK_THAT(r.err,
             Catch::StartsWith("shardwise: error: verification failed: 5 mismatches in 5 files (2 files ("));

  const CommandResult m = verify_manifest_only(out);
  CHECK(m.exit_code == 6);
  CHECK_THAT(
      m.out,
      Catch::Contains("model1-mp4.safetensors: layers.0.attn.wq_b.qweight: bytes differ from the manifest"));
  CHECK_THAT(m.out, Catch::Contains(
                        "model0-mp4.safetensors: extra.weight: unexpected tensor (not in the manifest)"));
  CHECK_THAT(m.out, Catch::Contains("model3-mp4.safetensors: missing (the manifest lists it: "));
}

TEST_CASE("cli: --manifest-only catches a flipped byte without the input") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  std::map<std::string, std::uint64_t> at;
  read_tensors(out + "/model2-mp4.safetensors", &at);
  flip_byte(out + "/model2-mp4.safetensors", at.at("head.weight") + 10);
  const CommandResult r = verify_manifest_only(out);
  CHECK(r.exit_code == 6);
  CHECK_THAT(r.out,
             Catch::StartsWith(
                 "model2-mp4.safetensors: head.weight: bytes differ from the manifest (expected xxh3 "));
}

TEST_CASE("cli: usage errors exit 2") {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  // Without --rules, whether -m is required depends on the rules the checkpoint fits: a real
  // W4A16 checkpoint, whose rules need it.
  const std::string input = tiny_mp4().input;
  const std::vector<Case> cases = {
      {{"verify", "--save-path", "x", "--model-parallel", "4"}, "--hf-ckpt-path is required"},
      {{"verify", "--save-path", "x", "--hf-ckpt-path", input}, "--model-parallel is required"},
      {{"verify", "--manifest-only"}, "--save-path is required"},
      {{"verify", "--manifest-only", "--save-path", "x", "--threads", "0"}, "--threads"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {shardwise_binary()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const CommandResult r = run_command(argv);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(c.message));
  }
}

// The conversion's rules and parameters are in its manifest: verify uses them when --rules is not
// given, rather than the bundled rules detection would choose (which may not be the ones named).
TEST_CASE("cli: verify without --rules takes the rules and parameters the manifest records") {
  const CommandResult same = run_command(
      {shardwise_binary(), "verify", "--hf-ckpt-path", tiny_mp4().input, "--save-path", tiny_mp4().output});
  INFO(same.err);
  CHECK(same.exit_code == 0);
  CHECK_THAT(same.err, Catch::StartsWith("shardwise: rules: deepseek-v4-w4a16 (as " + tiny_mp4().output +
                                         "/shardwise-manifest.json records them; --rules names others)"));

  // A parameter given wins over the recorded one: mp 2 plans other files than the folder holds.
  const CommandResult other = run_command({shardwise_binary(), "verify", "--hf-ckpt-path", tiny_mp4().input,
                                           "--save-path", tiny_mp4().output, "-m", "2", "-q"});
  CHECK(other.exit_code == 6);
  CHECK_THAT(other.out, Catch::Contains("model0-mp2.safetensors: missing"));

  // Rules detection would not choose: the W4A16 checkpoint dequantised with gptq-to-bf16.
  TempDir tmp;
  const std::string out = (tmp / "bf16").string();
  const CommandResult convert =
      run_command({shardwise_binary(), "convert", "--hf-ckpt-path", tiny_mp4().input, "--save-path", out,
                   "--rules", "gptq-to-bf16", "-q"});
  REQUIRE(convert.exit_code == 0);
  const CommandResult r =
      run_command({shardwise_binary(), "verify", "--hf-ckpt-path", tiny_mp4().input, "--save-path", out});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.err, Catch::StartsWith("shardwise: rules: gptq-to-bf16 (as "));
  CHECK_THAT(r.out, Catch::StartsWith("verified 1 file ("));
}

TEST_CASE("cli: an unreadable input is an input error, not a verification failure") {
  TempDir tmp;
  const CommandResult r =
      run_command({shardwise_binary(), "verify", "--hf-ckpt-path", (tmp / "none").string(), "--save-path",
                   tiny_mp4().output, "--model-parallel", "4"});
  CHECK(r.exit_code == 5);  // the OS refused: ErrorKind::io
  CHECK_THAT(r.err, Catch::StartsWith("shardwise: error: cannot open " + (tmp / "none").string()));
}

}  // namespace
}  // namespace shardwise::test
