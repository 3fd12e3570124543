// `shardwise rules check|show` and `shardwise explain`, run as users run them.
#include <catch2/catch.hpp>

#include "support/support.hpp"

using shardwise::test::run_command;
using shardwise::test::shardwise_binary;
using shardwise::test::source_dir;

TEST_CASE("rules check: the bundled file is valid, with a summary") {
  const auto result = run_command({shardwise_binary(), "rules", "check"});
  CHECK(result.exit_code == 0);
  CHECK(result.out.find("<bundled>/deepseek-v4-w4a16.yaml: deepseek-v4-w4a16") == 0);
  CHECK(result.out.find("rules: 2 skips, 6 key rules, 28 table entries, 1 override, 1 ownership rule") != std::string::npos);
  CHECK(result.out.find("layout gptq-w4a16: qweight [in/8, out] I32; qzeros [in/128, out/8] I32; scales [in/128, out] "
                        "F16|BF16|F32 -> BF16") != std::string::npos);
  CHECK(result.out.find("<bundled>/deepseek-v4-w4a16.yaml: OK\n") != std::string::npos);
}

TEST_CASE("rules check: a bad file exits 3 with every problem") {
  const std::string file = source_dir() + "/tests/data/rules/missing_fields.yaml";
  const auto result = run_command({shardwise_binary(), "rules", "check", file});
  CHECK(result.exit_code == 3);
  CHECK(result.err.find("shardwise: error: invalid rules file " + file + " (5 problems):\n  " + file +
                        ":1:1: the rules file is missing required key 'shardwise'") == 0);
  CHECK(result.out.empty());
}

TEST_CASE("rules show prints the bundled YAML, which checks clean when saved") {
  const auto shown = run_command({shardwise_binary(), "rules", "show"});
  CHECK(shown.exit_code == 0);
  CHECK(shown.out == shardwise::test::read_file(source_dir() + "/rules/deepseek-v4-w4a16.yaml"));
}

TEST_CASE("explain: each name step by step, the deciding rule, output and placement") {
  const auto result = run_command({shardwise_binary(), "explain", "--model-parallel", "8", "--n-experts", "384",
                                   "model.layers.3.mlp.experts.200.down_proj.qzeros", "layers.1.attn.wo_b.qweight",
                                   "mtp.0.head.weight", "embed.weight", "orphan"});
  CHECK(result.exit_code == 0);
  const std::string& out = result.out;
  INFO(out);
  const std::string at = "<bundled>/deepseek-v4-w4a16.yaml:";
  CHECK(out.find("model.layers.3.mlp.experts.200.down_proj.qzeros\n  normalized: layers.3.ffn.experts.200.down_proj.qzeros\n"
                 "    - strip prefix 'model.' (" + at) != std::string::npos);
  CHECK(out.find("    - rename component 'mlp' -> 'ffn' (" + at) != std::string::npos);
  CHECK(out.find("  decided by: ownership[experts] (" + at) != std::string::npos);
  CHECK(out.find("  output: layers.3.ffn.experts.200.w2.qzeros\n") != std::string::npos);
  CHECK(out.find("  placement (mp=8): whole to rank 4 = index 200 / (n_experts=384 / mp=8)\n") != std::string::npos);
  CHECK(out.find("  placement (mp=8): split on logical in into 8 equal parts: qweight dim 0 (in/8)\n") != std::string::npos);
  CHECK(out.find("  skipped by skip: mtp-head (" + at) != std::string::npos);
  CHECK(out.find("  placement (mp=8): split on dim 0 (out) into 8 equal parts\n") != std::string::npos);
  CHECK(out.find("  UNMATCHED: no key rule matches 'orphan'\n") != std::string::npos);
}

TEST_CASE("explain: unknown parameters and bad values are usage errors") {
  const auto unknown = run_command({shardwise_binary(), "explain", "--param", "n_expert=8", "embed.weight"});
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("unknown parameter 'n_expert'") != std::string::npos);
  const auto bad = run_command({shardwise_binary(), "explain", "--param", "n_experts=-8", "embed.weight"});
  CHECK(bad.exit_code == 2);
  const auto awq = run_command({shardwise_binary(), "explain", "--rules", source_dir() + "/tests/data/rules/awq.yaml",
                                "-m", "2", "h.up.qweight"});
  CHECK(awq.exit_code == 0);
  CHECK(awq.out.find("split on logical out into 2 equal parts: qweight dim 1 (out/8)") != std::string::npos);
}

TEST_CASE("explain takes one NAME=VALUE per -p, and the names after it as names") {
  const auto result = run_command({shardwise_binary(), "explain", "-m", "8", "-p", "n_experts=384",
                                   "layers.3.ffn.experts.200.w1.qweight", "embed.weight"});
  INFO(result.err);
  CHECK(result.exit_code == 0);
  CHECK(result.out.find("\nlayers.3.ffn.experts.200.w1.qweight\n") != std::string::npos);
  CHECK(result.out.find("\nembed.weight\n") != std::string::npos);
  CHECK(result.out.find("whole to rank 4 = index 200 / (n_experts=384 / mp=8)") != std::string::npos);
}
