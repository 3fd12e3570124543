// Rules parameters read from the checkpoint's config.json (`from_config:`) through the real binary:
// the value taken and shown with its source (plan text, JSON, --summary, explain, --help), a flag
// that agrees or contradicts (exit 2), a missing key giving the default, a bad value (exit 4), a
// config.json that leads outside the folder (refused unless allowed), convert and verify.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::Args;
using shardwise::test::CommandResult;
using shardwise::test::generate_checkpoint;
using shardwise::test::holds_rank_file;
using shardwise::test::joined;
using shardwise::test::run_shardwise;
using shardwise::test::source_dir;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

std::string rules_file() { return source_dir() + "/tests/data/rules/w4a16-from-config.yaml"; }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A tiny W4A16 checkpoint of 8 experts per layer, with `config` as its config.json.
void checkpoint(const fs::path& in, const std::string& config) {
  generate_checkpoint(in, {"--layers", "2", "--experts", "8"});
  write_file(in / "config.json", config);
}

CommandResult plan(const fs::path& in, const Args& extra = {}) {
  return run_shardwise(joined({"plan", "-r", rules_file(), "-i", in.string(), "-m", "2"}, extra));
}

}  // namespace

TEST_CASE("from_config: the value is taken from config.json, and plan, --summary and JSON say so") {
  TempDir dir;
  checkpoint(dir / "in", R"({"n_routed_experts": 8, "num_attention_heads": 16})");
  const CommandResult text = plan(dir / "in");
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  CHECK(contains(text.out,
                 "params: heads=16 mp=2 n_experts=8\n"
                 "  heads = 16 (config.json: num_attention_heads)\n"
                 "  n_experts = 8 (config.json: n_routed_experts)\n"));
  const CommandResult summary = plan(dir / "in", {"--summary"});
  CHECK(contains(summary.out, "  n_experts = 8 (config.json: n_routed_experts)\n"));
  const CommandResult json = plan(dir / "in", {"--format", "json"});
  REQUIRE(json.exit_code == 0);
  const nlohmann::json parsed = nlohmann::json::parse(json.out);
  CHECK(parsed["params"]["n_experts"] == 8);
  CHECK(parsed["param_sources"]["n_experts"] ==
        nlohmann::json({{"from", "config"}, {"file", "config.json"}, {"key", "n_routed_experts"}}));
  CHECK(parsed["param_sources"]["heads"]["key"] == "num_attention_heads");
  CHECK(parsed["param_sources"].count("mp") == 0);
}

TEST_CASE("from_config: a flag that agrees is taken, one that contradicts is refused (exit 2)") {
  TempDir dir;
  checkpoint(dir / "in", R"({"n_routed_experts": 8})");
  const CommandResult agrees = plan(dir / "in", {"--n-experts", "8"});
  REQUIRE(agrees.exit_code == 0);
  CHECK(contains(agrees.out, "  n_experts = 8 (--n-experts)\n"));
  CHECK(contains(agrees.out, "  heads = 4 (default)\n"));  // no num_attention_heads: the default
  const CommandResult contradicts = plan(dir / "in", {"-p", "n_experts=16"});
  CHECK(contradicts.exit_code == 2);
  CHECK(contains(contradicts.err,
                 "--n-experts 16 contradicts the checkpoint: config.json: n_routed_experts is 8"));
}

TEST_CASE("from_config: a value the parameter does not take is refused (exit 4) by name") {
  TempDir dir;
  checkpoint(dir / "in", R"({"n_routed_experts": 8.0})");
  const CommandResult bad = plan(dir / "in");
  CHECK(bad.exit_code == 4);
  CHECK(contains(bad.err,
                 "config.json: n_routed_experts is 8.0, not a non-negative integer for parameter n_experts"));
  // Nothing gives it: the usage error says where it looked.
  write_file(dir / "in" / "config.json", R"({"vocab_size": 5})");
  const CommandResult missing = plan(dir / "in");
  CHECK(missing.exit_code == 2);
  CHECK(contains(missing.err, "--n-experts is required"));
  CHECK(contains(missing.err, "config.json has no n_routed_experts; no params.json in "));
  // The second key, in another file.
  write_file(dir / "in" / "params.json", R"({"n_experts": 8})");
  const CommandResult second = plan(dir / "in");
  CHECK(contains(second.out, "  n_experts = 8 (params.json: n_experts)\n"));
}

TEST_CASE("from_config: a config.json that leads outside the input folder is refused unless allowed") {
  TempDir dir;
  checkpoint(dir / "in", R"({"n_routed_experts": 8})");
  fs::create_directory(dir / "elsewhere");
  fs::rename(dir / "in" / "config.json", dir / "elsewhere" / "config.json");
  fs::create_symlink(dir / "elsewhere" / "config.json", dir / "in" / "config.json");
  const CommandResult refused = plan(dir / "in");
  CHECK(refused.exit_code == 4);
  CHECK(contains(refused.err, "config.json: leads outside its folder"));
  const CommandResult allowed = plan(dir / "in", {"--allow-outside-links"});
  CHECK(allowed.exit_code == 0);
  CHECK(contains(allowed.out, "  n_experts = 8 (config.json: n_routed_experts)\n"));
}

TEST_CASE("from_config: convert and verify read the same config; explain and --help show it") {
  TempDir dir;
  checkpoint(dir / "in", R"({"n_routed_experts": 8, "num_attention_heads": 16})");
  const Args common = {"-r", rules_file(), "-i", (dir / "in").string(), "-m", "2"};
  const CommandResult converted =
      run_shardwise(joined({"convert", "-o", (dir / "out").string(), "-q"}, common));
  INFO(converted.err);
  REQUIRE(converted.exit_code == 0);
  CHECK(holds_rank_file(dir / "out"));
  CHECK(run_shardwise(joined({"verify", "-o", (dir / "out").string()}, common)).exit_code == 0);
  CHECK(
      run_shardwise(joined({"verify", "-o", (dir / "out").string(), "--n-experts", "4"}, common)).exit_code ==
      2);

  const CommandResult explained = run_shardwise({"explain", "-r", rules_file(), "-i", (dir / "in").string(),
                                                 "-m", "4", "layers.1.ffn.experts.5.w2.qweight"});
  INFO(explained.err);
  REQUIRE(explained.exit_code == 0);
  CHECK(contains(explained.out,
                 "params:\n  n_experts = 8 (config.json: n_routed_experts)\n  heads = 16 "
                 "(config.json: num_attention_heads)\n"));
  const CommandResult without = run_shardwise({"explain", "-r", rules_file(), "x.w"});
  CHECK(without.exit_code == 2);
  CHECK(contains(without.err, "no checkpoint folder was given"));

  const CommandResult help = run_shardwise({"plan", "-r", rules_file(), "--help"});
  CHECK(contains(help.out,
                 "default: from config.json n_routed_experts or params.json n_experts, else required"));
  const CommandResult check = run_shardwise({"rules", "check", rules_file()});
  CHECK(check.exit_code == 0);
  CHECK(
      contains(check.out, "--heads N (default: from config.json num_attention_heads, else 4): query heads"));
}
