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
  CHECK(result.out.find("rules: 2 skips, 6 key rules, 28 table entries, 1 override, 1 ownership rule") !=
        std::string::npos);
  CHECK(result.out.find(
            "layout gptq-w4a16: qweight [in/8, out] I32; qzeros [in/128, out/8] I32; scales [in/128, out] "
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

TEST_CASE("rules list: each bundled file by name with its description, the default marked") {
  const auto result = run_command({shardwise_binary(), "rules", "list"});
  CHECK(result.exit_code == 0);
  CHECK(result.out.find("deepseek-v4-w4a16  DeepSeek-V4 W4A16 (GPTQ-packed) -> MP shards, as the reference "
                        "convert_w4a16 does (default)\n") != std::string::npos);
}

TEST_CASE("rules show NAME and rules check NAME|PATH address bundled rules by name") {
  const auto shown = run_command({shardwise_binary(), "rules", "show", "deepseek-v4-w4a16"});
  CHECK(shown.exit_code == 0);
  CHECK(shown.out == shardwise::test::read_file(source_dir() + "/rules/deepseek-v4-w4a16.yaml"));
  const auto checked = run_command({shardwise_binary(), "rules", "check", "deepseek-v4-w4a16"});
  CHECK(checked.exit_code == 0);
  CHECK(checked.out.find("<bundled>/deepseek-v4-w4a16.yaml: OK\n") != std::string::npos);
  const auto by_path =
      run_command({shardwise_binary(), "rules", "check", source_dir() + "/rules/deepseek-v4-w4a16.yaml"});
  CHECK(by_path.exit_code == 0);
  CHECK(by_path.out.find(source_dir() + "/rules/deepseek-v4-w4a16.yaml: OK\n") != std::string::npos);
}

TEST_CASE("rules show, check and explain refuse an unknown bundled name with exit 2 and the near miss") {
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {shardwise_binary(), "rules", "show", "deepseek-v4-w4a17"},
           {shardwise_binary(), "rules", "check", "deepseek-v4-w4a17"},
           {shardwise_binary(), "explain", "--rules", "deepseek-v4-w4a17", "embed.weight"}}) {
    const auto result = run_command(argv);
    INFO(argv[2]);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find("no bundled rules named 'deepseek-v4-w4a17' (did you mean 'deepseek-v4-w4a16'?)") !=
          std::string::npos);
  }
}

TEST_CASE("explain --rules NAME uses the bundled rules of that name") {
  const auto result = run_command(
      {shardwise_binary(), "explain", "--rules", "deepseek-v4-w4a16", "--n-experts", "256", "embed.weight"});
  CHECK(result.exit_code == 0);
  CHECK(result.out.find("rules: <bundled>/deepseek-v4-w4a16.yaml (deepseek-v4-w4a16)\n") == 0);
}

TEST_CASE("explain: each name step by step, the deciding rule, output and placement") {
  const auto result =
      run_command({shardwise_binary(), "explain", "--model-parallel", "8", "--n-experts", "384",
                   "model.layers.3.mlp.experts.200.down_proj.qzeros", "layers.1.attn.wo_b.qweight",
                   "mtp.0.head.weight", "embed.weight", "orphan"});
  CHECK(result.exit_code == 0);
  const std::string& out = result.out;
  INFO(out);
  const std::string at = "<bundled>/deepseek-v4-w4a16.yaml:";
  CHECK(out.find("model.layers.3.mlp.experts.200.down_proj.qzeros\n  normalized: "
                 "layers.3.ffn.experts.200.down_proj.qzeros\n"
                 "    - strip prefix 'model.' (" +
                 at) != std::string::npos);
  CHECK(out.find("    - rename component 'mlp' -> 'ffn' (" + at) != std::string::npos);
  CHECK(out.find("  decided by: ownership[experts] (" + at) != std::string::npos);
  CHECK(out.find("  output: layers.3.ffn.experts.200.w2.qzeros\n") != std::string::npos);
  CHECK(out.find("  placement (mp=8): whole to rank 4 = index 200 / (n_experts=384 / mp=8)\n") !=
        std::string::npos);
  CHECK(out.find("  placement (mp=8): split on logical in into 8 equal parts: qweight dim 0 (in/8)\n") !=
        std::string::npos);
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
  const auto awq = run_command({shardwise_binary(), "explain", "--rules",
                                source_dir() + "/tests/data/rules/awq.yaml", "-m", "2", "h.up.qweight"});
  CHECK(awq.exit_code == 0);
  CHECK(awq.out.find("split on logical out into 2 equal parts: qweight dim 1 (out/8)") != std::string::npos);
}

TEST_CASE("explain takes the model parallelisms convert takes, up to 4096") {
  const auto at_bound =
      run_command({shardwise_binary(), "explain", "-m", "4096", "--n-experts", "4096", "embed.weight"});
  CHECK(at_bound.exit_code == 0);
  const auto explain =
      run_command({shardwise_binary(), "explain", "-m", "4097", "--n-experts", "8", "embed.weight"});
  const auto convert = run_command({shardwise_binary(), "convert", "-i", "/nonexistent", "-o",
                                    "/nonexistent-out", "-m", "4097", "--n-experts", "8"});
  CHECK(explain.exit_code == 2);
  CHECK(convert.exit_code == 2);
  CHECK(explain.err.find("--model-parallel: Value 4097 not in range 1 to 4096") != std::string::npos);
  CHECK(convert.err.find("--model-parallel: Value 4097 not in range 1 to 4096") != std::string::npos);
}

TEST_CASE("rules check runs the file's tests: the bundled ones pass, a wrong expectation fails at its line") {
  const auto bundled = run_command({shardwise_binary(), "rules", "check"});
  CHECK(bundled.exit_code == 0);
  CHECK_THAT(bundled.out, Catch::Contains("  tests: 26 passed\n"));
  shardwise::test::TempDir dir;
  const auto file = (dir / "wrong.yaml").string();
  shardwise::test::write_file(
      file,
      "shardwise: 1\nname: wrong\nextends: deepseek-v4-w4a16\ntests:\n"
      "  - {tensor: layers.3.ffn.experts.200.w2.qzeros, mp: 8, params: {n_experts: 256}, expect: {ranks: "
      "[4]}}\n"
      "  - {tensor: embed.weight, mp: 2, params: {n_experts: 256}, expect: {split: out}}\n");
  const auto wrong = run_command({shardwise_binary(), "rules", "check", file});
  CHECK(wrong.exit_code == 3);
  CHECK(
      wrong.err ==
      "shardwise: error: the tests of " + file + " fail (1 problem):\n  " + file +
          ":5:5: test 'layers.3.ffn.experts.200.w2.qzeros' (mp=8, n_experts=256): ranks: expected [4], the "
          "rules decide [6] (deciding rule: ownership[experts] at <bundled>/deepseek-v4-w4a16.yaml:113:5)\n");
  CHECK_THAT(wrong.out, Catch::Contains("  extends: <bundled>/deepseek-v4-w4a16.yaml\n"));
}

TEST_CASE("rules check and explain on the DSpark example: the chain, its tests, the deciding file") {
  const std::string file = source_dir() + "/rules/examples/deepseek-v4.1-dspark-w4a16.yaml";
  const auto checked = run_command({shardwise_binary(), "rules", "check", file});
  CHECK(checked.exit_code == 0);
  CHECK_THAT(checked.out, Catch::Contains("  extends: <bundled>/deepseek-v4-w4a16.yaml\n") &&
                              Catch::Contains("  tests: 3 passed\n") && Catch::Contains(file + ": OK\n"));
  const auto explained = run_command(
      {shardwise_binary(), "explain", "--rules", file, "-m", "8", "--n-experts", "384", "-p",
       "n_mtp_experts=128", "mtp.1.ffn.experts.100.w1.qweight", "layers.1.ffn.experts.100.w1.qweight"});
  CHECK(explained.exit_code == 0);
  CHECK_THAT(explained.out,
             Catch::Contains("  decided by: ownership[mtp-experts] (" + file + ":9:5)\n") &&
                 Catch::Contains("whole to rank 6 = index 100 / (n_mtp_experts=128 / mp=8)") &&
                 Catch::Contains("  decided by: ownership[experts] (<bundled>/deepseek-v4-w4a16.yaml:"));
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
