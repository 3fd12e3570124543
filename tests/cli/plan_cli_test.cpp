// `shardwise plan` end to end on generated checkpoints: golden plans (text and JSON, reviewed by
// hand), --filter, the mp=16 refusal, usage errors. Goldens live in tests/data/golden/; after a
// deliberate change (e.g. the bundled rules moved a line), rerun with SHARDWISE_UPDATE_GOLDEN=1 and
// review the diff before committing.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/support.hpp"

using shardwise::test::read_file;
using shardwise::test::run_command;
using shardwise::test::shardwise_binary;
using shardwise::test::source_dir;
using shardwise::test::TempDir;
using shardwise::test::tools_dir;
using shardwise::test::write_file;

namespace {

// A small checkpoint: 3 layers (one with a compressor and the indexer), 2 experts, the MTP
// embed/head copies the rules skip, tokenizer files, tensors cut over 2 files so that a packed
// triple spans both.
void generate(const TempDir& dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {tools_dir() + "/gen_checkpoint", "--out", dir.str(), "--config", "tiny",
                                   "--layers", "3", "--experts", "2", "--files", "2", "--tokenizer",
                                   "--mtp-embed-head"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const auto result = run_command(argv);
  REQUIRE(result.exit_code == 0);
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

void check_golden(const std::string& actual, const std::string& name) {
  const std::string path = source_dir() + "/tests/data/golden/" + name;
  if (std::getenv("SHARDWISE_UPDATE_GOLDEN") != nullptr) write_file(path, actual);
  const std::string expected = read_file(path);
  CHECK(actual == expected);
}

shardwise::test::CommandResult plan(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {shardwise_binary(), "plan"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

}  // namespace

TEST_CASE("plan prints the golden text and JSON plans of a small checkpoint") {
  TempDir dir;
  generate(dir);
  const auto text = plan({"--hf-ckpt-path", dir.str(), "--n-experts", "2", "--model-parallel", "2"});
  REQUIRE(text.exit_code == 0);
  CHECK(text.err.empty());
  check_golden(replace_all(text.out, dir.str(), "<IN>"), "plan-tiny-mp2.txt");

  const auto json = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--format", "json"});
  REQUIRE(json.exit_code == 0);
  check_golden(replace_all(json.out, dir.str(), "<IN>"), "plan-tiny-mp2.json");
  const auto doc = nlohmann::json::parse(json.out);
  CHECK(doc["model_parallel"] == 2);
  CHECK(doc["outputs"].size() == 2);
}

TEST_CASE("plan shows renames of HF-style names") {
  TempDir dir;
  generate(dir, {"--style", "hf", "--index"});
  const auto text = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2"});
  REQUIRE(text.exit_code == 0);
  check_golden(replace_all(text.out, dir.str(), "<IN>"), "plan-tiny-hf-mp2.txt");
}

TEST_CASE("plan --filter narrows the rows, not the summary") {
  TempDir dir;
  generate(dir);
  const auto all = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2"});
  const auto some = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--filter", "weights_proj"});
  REQUIRE(some.exit_code == 0);
  CHECK(some.out.find("placed: 268 source tensors, 3 shown matching --filter weights_proj") != std::string::npos);
  CHECK(some.out.find("  layers.1.attn.indexer.weights_proj.qzeros  I32[2, 8]  ranks 0-1  dim1[0:4] dim1[4:8]") !=
        std::string::npos);
  CHECK(some.out.find("layers.0.attn.wq_b") == std::string::npos);
  const auto summary = [](const std::string& out) { return out.substr(out.find("\nrank  file")); };
  CHECK(summary(some.out) == summary(all.out));

  const auto json = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--format", "json", "--filter", "\\.scales$"});
  REQUIRE(json.exit_code == 0);
  const auto doc = nlohmann::json::parse(json.out);
  CHECK(doc["filter"] == "\\.scales$");
  for (const auto& out : doc["outputs"]) {
    CHECK(out["tensor_count"] > out["tensors"].size());
    for (const auto& t : out["tensors"]) CHECK(t["name"].get<std::string>().ends_with(".scales"));
  }
}

TEST_CASE("plan refuses mp=16 where weights_proj's qzeros cannot be split") {
  TempDir dir;
  generate(dir);
  const auto result = plan({"-i", dir.str(), "--n-experts", "16", "-m", "16"});
  CHECK(result.exit_code == 4);
  CHECK(result.out.empty());
  CHECK(result.err.find("cannot plan " + dir.str() + " for mp=16") != std::string::npos);
  CHECK(result.err.find("\n  layers.1.attn.indexer.weights_proj.qzeros: 8 packed columns cannot be split over mp=16 "
                        "(out=64, 4 per rank, packing 8)\n") != std::string::npos);
  CHECK(result.err.find("\n  layers.0.attn.attn_sink: 8 entries cannot be split over mp=16 (dim 0 of [8]: 8 is not "
                        "a multiple of 16)\n") != std::string::npos);
}

TEST_CASE("plan usage errors exit 2") {
  TempDir dir;
  generate(dir);
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"-i", dir.str(), "-m", "2", "--n-experts", "2", "--filter", "("},
       "invalid --filter pattern '(': missing ): ("},
      {{"-i", dir.str(), "-m", "2", "--n-experts", "2", "--format", "yaml"}, "--format"},
      {{"-i", dir.str(), "-m", "2"}, "--n-experts is required: routed experts per MoE layer"},
      {{"-i", dir.str()}, "--model-parallel is required"},
      {{"-i", dir.str(), "-m", "2", "--n-expert", "2"}, "n_expert"},
  };
  for (const Case& c : cases) {
    const auto result = plan(c.args);
    INFO(result.err);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find(c.message) != std::string::npos);
  }
}

TEST_CASE("plan says so when standard output refuses the plan") {
  TempDir dir;
  generate(dir);
  const auto result = run_command(
      {"/bin/sh", "-c", shardwise_binary() + " plan -m 2 --n-experts 2 -i '" + dir.str() + "' > /dev/full"});
  CHECK(result.exit_code == 5);
  CHECK_THAT(result.err, Catch::Contains("cannot write the plan to standard output: No space left on device"));
}

TEST_CASE("plan --help explains the command") {
  const auto result = plan({"--help"});
  CHECK(result.exit_code == 0);
  for (const char* text : {"--hf-ckpt-path", "--model-parallel", "--rules", "--format", "--filter", "--param",
                           "headers alone", "--n-experts"}) {
    CHECK(result.out.find(text) != std::string::npos);
  }
}

TEST_CASE("every command that plans lists the bundled rules' parameters as flags and honours them") {
  for (const char* command : {"plan", "convert", "verify", "explain"}) {
    INFO(command);
    const auto help = run_command({shardwise_binary(), command, "--help"});
    CHECK(help.exit_code == 0);
    CHECK_THAT(help.out,
               Catch::Contains("--n-experts UINT") && Catch::Contains("required by the bundled rules"));
  }
  TempDir dir;
  generate(dir);  // 2 experts per layer; n_experts=3 cannot be spread over 2 ranks
  CHECK(plan({"-i", dir.str(), "-m", "2", "--n-experts", "2"}).exit_code == 0);
  const auto dry = run_command({shardwise_binary(), "convert", "-i", dir.str(), "-o", (dir / "out").string(), "-m",
                                "2", "--n-experts", "3", "--dry-run"});
  CHECK(dry.exit_code == 4);
  CHECK_THAT(dry.err, Catch::Contains("n_experts=3 is not a multiple of mp=2"));
}
