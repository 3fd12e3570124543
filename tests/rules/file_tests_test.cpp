// A rules file's own `tests:`: read with the file (schema errors located), run by run_tests(), each
// failure at its test's FILE:LINE:COL with what was expected and what the rules decide.
#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/rules/rules.hpp>

using shardwise::Error;
using shardwise::rules::Rules;

namespace {

const std::string kRules = R"(shardwise: 1
name: t
params:
  n_experts: {default: 8}
output: {file: "m{rank}.safetensors"}
reject:
  - {name: quantised-embed, match: '^embed\.q', reason: re-download the BF16 embed}
skip:
  - {name: rotary, match: 'rotary', reason: recomputed}
keys:
  - {match: '(?P<key>[^.]+)\.[^.]+$'}
table:
  wq: {rename: q, split: out}
  norm: {split: replicate}
ownership:
  - {name: experts, match: '\.experts\.(?P<index>[0-9]+)\.', count: n_experts}
tests:
)";

Rules::TestReport run(const std::string& tests) {
  return Rules::load_text(kRules + tests, "t.yaml").run_tests();
}

}  // namespace

TEST_CASE("rules tests: expectations met pass") {
  const auto report = run(
      R"(  - {tensor: l.0.wq.weight, mp: 4, expect: {output: l.0.q.weight, split: out, ranks: all, rule: 'table[wq]'}}
  - {tensor: l.0.experts.5.wq.weight, mp: 4, params: {n_experts: 16}, expect: {ranks: [1], split: whole, rule: experts}}
  - {tensor: l.0.experts.5.wq.weight, mp: 4, expect: {ranks: [2], rule: 'ownership[experts]'}}
  - {tensor: l.0.rotary.inv_freq, expect: {skip: true, rule: rotary}}
  - {tensor: embed.qweight, expect: {reject: true, rule: 'reject: quantised-embed'}}
  - {tensor: l.0.norm.weight, mp: 2, expect: {skip: false, reject: false, ranks: [0, 1], split: replicate}}
)");
  CHECK(report.run == 6);
  CHECK(report.failures.empty());
}

TEST_CASE("rules tests: each unmet expectation is a failure at the test's line, expected against decided") {
  const auto report = run(R"(  - {tensor: l.0.wq.weight, mp: 4, expect: {output: l.0.wq.weight, split: in}}
  - {tensor: l.0.experts.5.wq.weight, mp: 4, params: {n_experts: 16}, expect: {ranks: [3]}}
  - {tensor: l.0.rotary.inv_freq, expect: {skip: false, output: x}}
  - {tensor: l.0.experts.5.wq.weight, mp: 3, expect: {ranks: [1]}}
  - {tensor: orphan, expect: {output: orphan}}
  - {tensor: embed.qweight, expect: {rule: wq}}
)");
  CHECK(report.run == 6);
  const std::vector<std::string> expected = {
      "t.yaml:18:5: test 'l.0.wq.weight' (mp=4): output: expected 'l.0.wq.weight', the rules decide "
      "'l.0.q.weight' "
      "(deciding rule: table[wq] at t.yaml:13:3)",
      "t.yaml:18:5: test 'l.0.wq.weight' (mp=4): split: expected in, the rules decide out (deciding rule: "
      "table[wq] at "
      "t.yaml:13:3)",
      "t.yaml:19:5: test 'l.0.experts.5.wq.weight' (mp=4, n_experts=16): ranks: expected [3], the rules "
      "decide [1] "
      "(deciding rule: ownership[experts] at t.yaml:16:5)",
      "t.yaml:20:5: test 'l.0.rotary.inv_freq' (mp=1): output: expected 'x', the rules decide none (skipped) "
      "(deciding rule: skip: rotary at t.yaml:9:5)",
      "t.yaml:20:5: test 'l.0.rotary.inv_freq' (mp=1): skip: expected false, the rules decide skipped "
      "(deciding rule: "
      "skip: rotary at t.yaml:9:5)",
      "t.yaml:21:5: test 'l.0.experts.5.wq.weight' (mp=3): ranks: expected [1], but the tensor cannot be "
      "placed: "
      "n_experts=8 is not a multiple of mp=3 (deciding rule: ownership[experts] at t.yaml:16:5)",
      "t.yaml:22:5: test 'orphan' (mp=1): no rule places it: no key rule matches 'orphan'",
      "t.yaml:23:5: test 'embed.qweight' (mp=1): rule: expected 'wq', the deciding rule is 'reject: "
      "quantised-embed' "
      "(deciding rule: reject: quantised-embed at t.yaml:7:5)",
  };
  CHECK(report.failures == expected);
}

TEST_CASE("rules tests: malformed tests are rules-file problems, located") {
  try {
    run(R"(  - {tensor: a.wq.weight, mp: 0, params: {n_expert: 4, mp: 2}, expect: {ranks: some, split: column, skip: yes}}
  - {tensor: a.wq.weight, expect: {}}
  - {tensor: a.wq.weight, expct: {output: a}}
)");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) ==
          "invalid rules file t.yaml (9 problems):\n"
          "  t.yaml:18:31: mp of a test must be at least 1\n"
          "  t.yaml:18:43: unknown parameter 'n_expert' in a test (did you mean 'n_experts'?)\n"
          "  t.yaml:18:56: give mp as the test's own 'mp:', not under params\n"
          "  t.yaml:18:80: 'ranks' of a test must be a list of ranks or all, got a scalar\n"
          "  t.yaml:18:93: 'split' of expect must be out, in, replicate or whole (owned by one rank), got "
          "'column'\n"
          "  t.yaml:18:107: 'skip' of expect must be true or false, got 'yes'\n"
          "  t.yaml:19:35: expect of a test is empty (expect any of: output, ranks, split, skip, reject, "
          "rule, transform, fused, chunks)\n"
          "  t.yaml:20:5: test is missing required key 'expect'\n"
          "  t.yaml:20:27: unknown key 'expct' in test (did you mean 'expect'?)");
  }
}

TEST_CASE(
    "rules tests: every bundled file's tests pass, and the default's cover the reference's behaviours") {
  for (const auto& bundled : shardwise::rules::bundled_rules()) {
    INFO(bundled.file_name);
    const auto report = shardwise::rules::load_named_rules(bundled.name).run_tests();
    for (const auto& failure : report.failures) UNSCOPED_INFO(failure);
    CHECK(report.failures.empty());
  }
  CHECK(Rules::bundled().run_tests().run >= 20);
}

TEST_CASE("rules tests: a failure shows a choice parameter by its word") {
  std::string text = kRules;
  const std::string params = "params:\n";
  text.insert(text.find(params) + params.size(), "  kind: {choices: [fp4, fp8], default: fp4}\n");
  const auto report =
      Rules::load_text(
          text + "  - {tensor: l.0.wq.weight, mp: 2, params: {kind: fp8}, expect: {split: in}}\n", "t.yaml")
          .run_tests();
  CHECK(report.failures ==
        std::vector<std::string>{
            "t.yaml:19:5: test 'l.0.wq.weight' (mp=2, kind=fp8): split: expected in, the rules "
            "decide out (deciding rule: table[wq] at t.yaml:14:3)"});
}
