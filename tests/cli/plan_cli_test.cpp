// `shardwise plan` end to end on generated checkpoints: golden plans (text and JSON, reviewed by
// hand), --summary, --filter, --rank, --rule, the mp=16 refusal, usage errors. Goldens live in
// tests/data/golden/; after a deliberate change (e.g. the bundled rules moved a line), rerun with
// SHARDWISE_UPDATE_GOLDEN=1 and review the diff before committing.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/support.hpp"

using shardwise::test::Args;
using shardwise::test::generate_checkpoint;
using shardwise::test::joined;
using shardwise::test::read_file;
using shardwise::test::run_command;
using shardwise::test::shardwise_binary;
using shardwise::test::source_dir;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

// A small checkpoint: 3 layers (one with a compressor and the indexer), 2 experts, the MTP
// embed/head copies the rules skip, tokenizer files, tensors cut over 2 files so that a packed
// triple spans both.
const Args kCheckpoint = {"--layers", "3", "--experts",   "2",
                          "--files",  "2", "--tokenizer", "--mtp-embed-head"};

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
  generate_checkpoint(dir.path(), kCheckpoint);
  const auto text = plan({"--hf-ckpt-path", dir.str(), "--n-experts", "2", "--model-parallel", "2"});
  REQUIRE(text.exit_code == 0);
  // Without --rules, stderr names the rules the checkpoint fits, in one line; stdout is the plan.
  CHECK_THAT(text.err, Catch::StartsWith("shardwise: rules: deepseek-v4-w4a16 (fits: "));
  CHECK(std::count(text.err.begin(), text.err.end(), '\n') == 1);
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
  generate_checkpoint(dir.path(), joined(kCheckpoint, {"--style", "hf", "--index"}));
  const auto text = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2"});
  REQUIRE(text.exit_code == 0);
  check_golden(replace_all(text.out, dir.str(), "<IN>"), "plan-tiny-hf-mp2.txt");
}

TEST_CASE("plan --filter narrows the rows, not the summary") {
  TempDir dir;
  generate_checkpoint(dir.path(), kCheckpoint);
  const auto all = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2"});
  const auto some = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--filter", "weights_proj"});
  REQUIRE(some.exit_code == 0);
  CHECK_THAT(
      some.out,
      Catch::Contains("placed: 268 source tensors, 3 shown (--filter weights_proj)\n"
                      "  SOURCE                                      OUTPUT  IN           RANKS  SLICE      "
                      "OUT          BYTES  RULE\n"));
  // Columns as wide as the rows shown need.
  CHECK_THAT(some.out,
             Catch::Contains(
                 "\n  layers.1.attn.indexer.weights_proj.qzeros   =       I32[2, 8]    all    dim1 2x4   "
                 "I32[2, 4]       32  table[weights_proj]\n"));
  CHECK(some.out.find("layers.0.attn.wq_b") == std::string::npos);
  const auto summary = [](const std::string& out) { return out.substr(out.find("\nrank  file")); };
  CHECK(summary(some.out) == summary(all.out));

  const auto json =
      plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--format", "json", "--filter", "\\.scales$"});
  REQUIRE(json.exit_code == 0);
  const auto doc = nlohmann::json::parse(json.out);
  CHECK(doc["filter"] == "\\.scales$");
  for (const auto& out : doc["outputs"]) {
    CHECK(out["tensor_count"] > out["tensors"].size());
    for (const auto& t : out["tensors"]) CHECK(t["name"].get<std::string>().ends_with(".scales"));
  }
}

TEST_CASE("plan --rank shows only what one rank receives, --format json holds only that rank") {
  TempDir dir;
  generate_checkpoint(dir.path(), kCheckpoint);
  const auto json = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--format", "json", "--rank", "1"});
  REQUIRE(json.exit_code == 0);
  const auto doc = nlohmann::json::parse(json.out);
  CHECK(doc["filter_rank"] == 1);
  REQUIRE(doc["outputs"].size() == 1);
  CHECK(doc["outputs"][0]["rank"] == 1);
  CHECK(doc["outputs"][0]["tensors"].size() == doc["outputs"][0]["tensor_count"]);
  CHECK(doc["skipped"].empty());
  CHECK(doc["totals"]["tensors"] == 464);  // the whole plan

  const auto text =
      plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--rank", "1", "--rule", "table[wo_a]"});
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(text.out,
             Catch::Contains("placed: 268 source tensors, 12 shown (--rank 1 --rule table[wo_a])\n"));
  CHECK_THAT(text.out,
             Catch::Contains("\n  layers.0.attn.wo_a.qweight  =       I32[32, 1024]  1      dim1[512:1024]  "
                             "I32[32, 512]  65,536  table[wo_a]\n"));
  CHECK_THAT(text.out, Catch::Contains("\nskipped: 2 tensors, 0 shown (--rank 1 --rule table[wo_a])\n"));
  CHECK_THAT(text.out, Catch::Contains("\nrules: 1 named above\n  RULE         WRITTEN AT\n"
                                       "  table[wo_a]  <bundled>/deepseek-v4-w4a16.yaml:94:3\n"));
  // Owned experts: rank 1 receives expert 1 of each layer, never expert 0.
  const auto experts = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--rank", "1", "--filter",
                             "experts\\.[01]\\.w1\\.qweight"});
  CHECK_THAT(experts.out, Catch::Contains("placed: 268 source tensors, 4 shown (--rank 1 --filter "));
  CHECK(experts.out.find("experts.0.w1") == std::string::npos);
}

TEST_CASE("plan --summary is short and names the rules and the rank files") {
  TempDir dir;
  generate_checkpoint(dir.path(), kCheckpoint);
  const auto summary = plan({"-i", dir.str(), "--n-experts", "2", "-m", "2", "--summary"});
  REQUIRE(summary.exit_code == 0);
  check_golden(replace_all(summary.out, dir.str(), "<IN>"), "plan-tiny-mp2-summary.txt");
  const auto dry = run_command({shardwise_binary(), "convert", "-i", dir.str(), "-o", (dir / "out").string(),
                                "-m", "2", "--n-experts", "2", "--dry-run", "--summary"});
  CHECK(dry.exit_code == 0);
  CHECK(dry.out == summary.out);
  CHECK_FALSE(std::filesystem::exists(dir / "out"));
}

TEST_CASE("plan refuses mp=16 where weights_proj's qzeros cannot be split") {
  TempDir dir;
  generate_checkpoint(dir.path(), kCheckpoint);
  const auto result = plan({"-i", dir.str(), "--n-experts", "16", "-m", "16"});
  CHECK(result.exit_code == 4);
  CHECK(result.out.empty());
  CHECK(result.err.find("cannot plan " + dir.str() + " for mp=16") != std::string::npos);
  CHECK(result.err.find(
            "\n  layers.1.attn.indexer.weights_proj.qzeros: 8 packed columns cannot be split over mp=16 "
            "(out=64, 4 per rank, packing 8)\n") != std::string::npos);
  CHECK(result.err.find(
            "\n  layers.0.attn.attn_sink: 8 entries cannot be split over mp=16 (dim 0 of [8]: 8 is not "
            "a multiple of 16)\n") != std::string::npos);
}

TEST_CASE("plan usage errors exit 2") {
  TempDir dir;
  generate_checkpoint(dir.path(), kCheckpoint);
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
      {{"-i", dir.str(), "-m", "2", "--n-expert", "2"},
       "unknown option --n-expert (did you mean '--n-experts'?): neither an option of `plan` nor a parameter "
       "of "
       "the default rules (deepseek-v4-w4a16)"},
      {{"-i", dir.str(), "-m", "2", "--n-experts", "2", "--summry"},
       "unknown option --summry (did you mean '--summary'?)"},
      {{"-i", dir.str(), "-m", "2", "--n-experts", "two"},
       "--n-experts 'two': expected a non-negative integer"},
      {{"-i", dir.str(), "-m", "2", "--n-experts", "2", "--rank", "2"},
       "--rank 2: the plan has ranks 0 to 1 (mp=2)"},
      {{"-i", dir.str(), "-m", "2", "--n-experts", "2", "--rule", "table[wo_c]"},
       "--rule 'table[wo_c]': no tensor of this plan was decided by a rule of that name (did you mean "
       "'table[wo_a]'?)"},
      {{"-i", dir.str(), "-m", "2", "--n-experts", "2", "--summary", "--rank", "0"},
       "--summary describes the whole plan: it cannot be combined with --rank, --rule or --filter"},
      {{"-i", dir.str(), "-m", "2", "--n-experts", "2", "--summary", "--format", "json"},
       "--summary is for people"},
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
  generate_checkpoint(dir.path(), kCheckpoint);
  const auto result = run_command(
      {"/bin/sh", "-c", shardwise_binary() + " plan -m 2 --n-experts 2 -i '" + dir.str() + "' > /dev/full"});
  CHECK(result.exit_code == 5);
  CHECK_THAT(result.err,
             Catch::Contains("cannot write the plan to standard output: No space left on device"));
}

TEST_CASE("plan --help explains the command") {
  const auto result = plan({"--help"});
  CHECK(result.exit_code == 0);
  for (const char* text :
       {"--hf-ckpt-path", "--model-parallel", "--rules", "--format", "--filter", "--param", "headers alone",
        "--n-experts", "--summary", "--rank", "--rule", "shardwise diff"}) {
    CHECK(result.out.find(text) != std::string::npos);
  }
}

TEST_CASE("every command that plans lists the bundled rules' parameters as flags and honours them") {
  for (const char* command : {"plan", "convert", "verify", "explain"}) {
    INFO(command);
    const auto help = run_command({shardwise_binary(), command, "--help"});
    CHECK(help.exit_code == 0);
    CHECK_THAT(
        help.out,
        Catch::Contains("--n-experts UINT") &&
            Catch::Contains("(a parameter of deepseek-v3, deepseek-v3.2, deepseek-v4, deepseek-v4-w4a16; "
                            "required)"));
  }
  TempDir dir;
  generate_checkpoint(dir.path(), kCheckpoint);  // 2 experts per layer; n_experts=3 cannot be spread over 2
                                                 // ranks
  CHECK(plan({"-i", dir.str(), "-m", "2", "--n-experts", "2"}).exit_code == 0);
  const auto dry = run_command({shardwise_binary(), "convert", "-i", dir.str(), "-o", (dir / "out").string(),
                                "-m", "2", "--n-experts", "3", "--dry-run"});
  CHECK(dry.exit_code == 4);
  CHECK_THAT(dry.err, Catch::Contains("n_experts=3 is not a multiple of mp=2"));
}

TEST_CASE("plan --rules NAME plans with the bundled rules of that name, an unknown name exits 2") {
  TempDir dir;
  generate_checkpoint(dir.path(), kCheckpoint);
  const auto by_default = plan({"-i", dir.str(), "-m", "2", "--n-experts", "2"});
  const auto by_name = plan({"-i", dir.str(), "-m", "2", "--n-experts", "2", "--rules", "deepseek-v4-w4a16"});
  REQUIRE(by_name.exit_code == 0);
  CHECK(by_name.out == by_default.out);
  const auto unknown = plan({"-i", dir.str(), "-m", "2", "--rules", "deepseek-v4-w4a1"});
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("no bundled rules named 'deepseek-v4-w4a1' (did you mean"));
}

TEST_CASE(
    "plan with the DSpark example: MTP experts by their own count, everything else as the bundled rules") {
  TempDir dir;
  // 2 backbone experts
  generate_checkpoint(dir.path(),
                      joined(kCheckpoint, {"--mtp-blocks", "3", "--mtp-experts", "4", "--markov-head"}));
  const std::string dspark = source_dir() + "/rules/examples/deepseek-v4.1-dspark-w4a16.yaml";
  const auto result = plan({"-i", dir.str(), "-m", "2", "--n-experts", "2", "--param", "n_mtp_experts=4",
                            "--rules", dspark, "--format", "json"});
  REQUIRE(result.exit_code == 0);
  const auto bundled = plan({"-i", dir.str(), "-m", "2", "--n-experts", "2", "--format", "json"});
  CHECK(bundled.exit_code == 4);  // the MTP blocks hold 4 experts each, n_experts says 2
  CHECK_THAT(bundled.err,
             Catch::Contains("mtp.0.ffn.experts: 4 experts (0-3) in the checkpoint, but n_experts=2"));

  const auto doc = nlohmann::json::parse(result.out);
  std::size_t mtp_experts = 0;
  for (const auto& output : doc["outputs"]) {
    for (const auto& tensor : output["tensors"]) {
      const std::string name = tensor["name"];
      if (name.starts_with("mtp.") && name.find(".ffn.experts.") != std::string::npos) {
        ++mtp_experts;
        const int index = std::stoi(name.substr(name.find(".experts.") + 9));
        CHECK(output["rank"] == index / 2);  // n_mtp_experts=4 over mp=2
        CHECK_THAT(std::string(tensor["rule"]),
                   Catch::StartsWith("ownership[mtp-experts] (" + dspark + ":9:5)"));
      }
      if (name == "markov_head.markov_w1.weight")
        CHECK(std::string(tensor["rule"]).starts_with("unknown_keys[markov_w1]"));
    }
  }
  CHECK(mtp_experts == 3 * 4 * 3 * 3);  // blocks x experts x (w1, w2, w3) x (qweight, qzeros, scales)
}

TEST_CASE("plan refuses a tensor a reject rule matches, quoting the reason, with every other problem") {
  TempDir dir;
  generate_checkpoint(dir.path(), {"--layers", "2", "--experts", "8", "--quant-gate-embed"});
  const auto rules = (dir / "strict.yaml").string();
  write_file(rules,
             "shardwise: 1\nname: strict\nextends: deepseek-v4-w4a16\nreject:\n"
             "  - name: quantised-embed\n"
             "    match: '(?:^|\\.)(?:embed|gate)\\.(?:qweight|qzeros|scales)$'\n"
             "    reason: this upload quantised embed and gate; re-download the BF16 one\n");
  const auto result = plan({"-i", dir.str(), "-m", "2", "--n-experts", "8", "--rules", rules});
  CHECK(result.exit_code == 4);
  CHECK_THAT(
      result.err,
      Catch::Contains("\n  embed.qweight (model.safetensors): refused by reject: quantised-embed (" + rules +
                      ":5:5): this upload quantised embed and gate; re-download the BF16 one\n"));
  CHECK_THAT(result.err, Catch::Contains("layers.0.ffn.gate.scales"));
  CHECK(result.out.empty());
}
