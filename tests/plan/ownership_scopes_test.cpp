// The ownership check of the planner: every scope of an ownership rule (the output name up to the
// captured index) against its count, given, defaulted or inferred from the checkpoint; scopes with
// gaps, indices holding fewer tensors than their siblings, scopes of different sizes under one
// count, partial rules.

#include <catch2/catch.hpp>

#include <algorithm>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;
using plan::Plan;
using st::DType;

namespace {

const std::string kItems = "ownership[items] at plan-test.yaml:38:5";

// kPlanRules with one line replaced (line numbers stay those of kPlanRules).
std::string rules_with(const std::string& from, const std::string& to) {
  std::string text = kPlanRules;
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

std::string infer_rules() { return rules_with("n_items: {default: 4,", "n_items: {default: infer,"); }
std::string partial_rules() {
  return rules_with("    count: n_items\n", "    count: n_items\n    partial: true\n");
}
std::string required_rules() { return rules_with("n_items: {default: 4,", "n_items: {"); }

// `scope.I.rest` for every index in `indices` and every rest.
std::vector<TensorSpec> items(const std::string& scope, const std::vector<int>& indices,
                              const std::vector<std::string>& rests = {"col.weight"}) {
  std::vector<TensorSpec> tensors;
  for (const int i : indices) {
    for (const std::string& rest : rests)
      tensors.push_back({scope + "." + std::to_string(i) + "." + rest, DType::BF16, {4, 2}});
  }
  return tensors;
}

Plan plan_with(const std::string& rules_text, const std::vector<TensorSpec>& tensors, std::uint64_t mp,
               rules::Params params = {}) {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", tensors);
  return plan_folder_with(dir.path(), rules_text, "plan-test.yaml", mp, std::move(params));
}

// The problems of a failed plan, one per line, without the heading (it names the temp dir).
std::vector<std::string> problems_of(const std::string& rules_text, const std::vector<TensorSpec>& tensors,
                                     std::uint64_t mp, rules::Params params = {}) {
  try {
    plan_with(rules_text, tensors, mp, std::move(params));
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    return problem_lines(e.what());
  }
  FAIL("the plan succeeded");
  return {};
}

std::uint64_t rank_of(const Plan& plan, const std::string& name) {
  for (const auto& out : plan.outputs) {
    for (const auto& t : out.tensors) {
      if (t.name == name) return out.rank;
    }
  }
  FAIL("no " << name << " in the plan");
  return 0;
}

}  // namespace

TEST_CASE("every scope must hold exactly the indices 0 .. count-1, each with the same tensors") {
  struct Case {
    const char* what;
    std::vector<TensorSpec> tensors;
    std::uint64_t mp;
    rules::Params params;
    std::vector<std::string> problems;
  };
  const std::vector<Case> cases = {
      {"count given too large",
       items("blk.0.items", {0, 1, 2, 3}),
       2,
       {{"n_items", 8}},
       {"blk.0.items: 4 items (0-3) in the checkpoint, but n_items=8 (from --n-items 8; " + kItems + ")"}},
      {"count given too small",
       items("blk.0.items", {0, 1, 2, 3}),
       2,
       {{"n_items", 2}},
       {"blk.0.items: 4 items (0-3) in the checkpoint, but n_items=2 (from --n-items 2; " + kItems + ")"}},
      {"the rules' default does not fit",
       items("blk.0.items", {0, 1}),
       2,
       {},
       {"blk.0.items: 2 items (0-1) in the checkpoint, but n_items=4 (the rules' default; give --n-items; " +
        kItems + ")"}},
      {"a gap",
       items("blk.0.items", {0, 1, 3}),
       2,
       {},
       {"blk.0.items: 3 items (0-1,3) in the checkpoint, but n_items=4 (the rules' default; give "
        "--n-items; " +
        kItems + ")"}},
      {"an index out of range",
       items("blk.0.items", {0, 1, 2, 3, 7}),
       2,
       {},
       {"blk.0.items: 5 items (0-3,7) in the checkpoint, but n_items=4 (the rules' default; give "
        "--n-items; " +
        kItems + ")"}},
      {"an index holding fewer tensors than its siblings",
       items("blk.0.items", {0, 1, 3}, {"col.weight", "row.weight"}) +
           items("blk.0.items", {2}, {"row.weight"}),
       2,
       {},
       {"blk.0.items.2: missing col.weight (held by other items of the scope: 1 of 2 tensors present; " +
        kItems + ")"}},
      {"each scope is checked against its own names, the missing ones listed in name order",
       items("blk.0.items", {0, 1, 2, 3}, {"alpha.weight", "row.weight"}) +
           items("blk.1.items", {0, 1, 3}, {"zed.weight", "col.weight", "row.weight"}) +
           items("blk.1.items", {2}, {"row.weight"}),
       2,
       {},
       {"blk.1.items.2: missing col.weight, zed.weight (held by other items of the scope: 1 of 3 tensors "
        "present; " +
        kItems + ")"}},
      {"a missing packed member is named",
       packed("blk.0.items.0.col", 64, 256) + packed("blk.0.items.1.col", 64, 256) +
           std::vector<TensorSpec>{{"blk.0.items.2.col.qweight", DType::I32, {32, 64}},
                                   {"blk.0.items.2.col.scales", DType::F16, {2, 64}}} +
           packed("blk.0.items.3.col", 64, 256),
       2,
       {},
       {"blk.0.items.2.col: incomplete packed group (packed): missing qzeros; present: "
        "blk.0.items.2.col.qweight "
        "(a.safetensors), blk.0.items.2.col.scales (a.safetensors)",
        "blk.0.items.2: missing col.qzeros (held by other items of the scope: 2 of 3 tensors present; " +
            kItems + ")"}},
      {"two scopes of different sizes under one count",
       items("blk.0.items", {0, 1, 2, 3}) + items("blk.1.items", {0, 1}),
       2,
       {{"n_items", 4}},
       {"blk.1.items: 2 items (0-1) in the checkpoint, but n_items=4 (from --n-items 4; " + kItems + ")",
        kItems +
            ": scopes hold different counts (2 in blk.1.items, 4 in blk.0.items), but one n_items counts "
            "them "
            "all; a rules file can take each scope's own count from the checkpoint with `n_items: {default: "
            "infer}` under params"}},
      {"a count that is not a multiple of mp",
       items("blk.0.items", {0, 1, 2, 3, 4, 5}),
       4,
       {{"n_items", 6}},
       {"n_items=6 is not a multiple of mp=4: the items of blk.0.items cannot be spread evenly over the "
        "ranks (from "
        "--n-items 6; " +
        kItems + ")"}},
  };
  for (const Case& c : cases) {
    SECTION(c.what) { CHECK(problems_of(kPlanRules, c.tensors, c.mp, c.params) == c.problems); }
  }
}

TEST_CASE("a count that fits places each index on rank index / (count / mp)") {
  const Plan plan =
      plan_with(kPlanRules, items("blk.0.items", {0, 1, 2, 3}) + items("blk.1.items", {0, 1, 2, 3}), 2);
  CHECK(rank_of(plan, "blk.0.items.1.col.weight") == 0);
  CHECK(rank_of(plan, "blk.0.items.2.col.weight") == 1);
  CHECK(rank_of(plan, "blk.1.items.3.col.weight") == 1);
  CHECK(plan.notes.empty());
}

TEST_CASE("a parameter without a default must be given, naming its flag") {
  const rules::Rules rules = rules::Rules::load_text(required_rules(), "plan-test.yaml");
  try {
    rules.resolve_params({});
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    CHECK(
        std::string(e.what()) ==
        "--n-items is required: owned items (parameter n_items of plan-test.yaml:4:3 has no default; --param "
        "n_items=N is the same)");
  }
}

TEST_CASE("default: infer takes each scope's own count from the checkpoint") {
  const auto tensors =
      items("blk.0.items", {0, 1, 2, 3}) + items("mtp.0.items", {0, 1}) + items("mtp.1.items", {0, 1});

  SECTION("each scope is spread over the ranks by its own count") {
    const Plan plan = plan_with(infer_rules(), tensors, 2);
    CHECK(rank_of(plan, "blk.0.items.1.col.weight") == 0);
    CHECK(rank_of(plan, "blk.0.items.2.col.weight") == 1);
    CHECK(rank_of(plan, "mtp.0.items.0.col.weight") == 0);
    CHECK(rank_of(plan, "mtp.1.items.1.col.weight") == 1);
    CHECK(plan.params.count("n_items") == 0);
    CHECK(plan.notes ==
          std::vector<std::string>{"n_items taken from the checkpoint, scope by scope ('default: "
                                   "infer'): 2 in mtp.0.items and 1 more scopes; 4 in blk.0.items"});
  }
  SECTION("a count given must agree with every scope") {
    CHECK(
        problems_of(infer_rules(), tensors, 2, {{"n_items", 4}}) ==
        std::vector<std::string>{
            "mtp.0.items: 2 items (0-1) in the checkpoint, but n_items=4 (from --n-items 4; " + kItems + ")",
            "mtp.1.items: 2 items (0-1) in the checkpoint, but n_items=4 (from --n-items 4; " + kItems + ")",
            kItems +
                ": scopes hold different counts (2 in mtp.0.items, 4 in blk.0.items), but one n_items counts "
                "them all; a rules file can take each scope's own count from the checkpoint with `n_items: "
                "{default: infer}` under params"});
  }
  SECTION("a scope with a gap, or a count that is not a multiple of mp") {
    CHECK(problems_of(infer_rules(), items("blk.0.items", {0, 1, 3}) + items("blk.1.items", {0, 1, 2}), 2) ==
          std::vector<std::string>{"blk.0.items: 3 items (0-1,3) in the checkpoint, not numbered 0-2 "
                                   "(n_items taken from the checkpoint, "
                                   "as the rules say 'default: infer'; " +
                                       kItems + ")",
                                   "blk.0.items: 3 items cannot be spread evenly over mp=2 (n_items taken "
                                   "from the checkpoint, as the "
                                   "rules say 'default: infer'; " +
                                       kItems + ")",
                                   "blk.1.items: 3 items cannot be spread evenly over mp=2 (n_items taken "
                                   "from the checkpoint, as the "
                                   "rules say 'default: infer'; " +
                                       kItems + ")"});
  }
}

TEST_CASE("a partial ownership rule checks only the indices' range, and the plan says so") {
  const Plan plan = plan_with(partial_rules(), items("blk.0.items", {3}), 2);
  CHECK(rank_of(plan, "blk.0.items.3.col.weight") == 1);
  CHECK(plan.notes ==
        std::vector<std::string>{kItems + " is partial: its 1 scopes (1 tensors) are not checked for "
                                          "completeness, only their indices' range"});
  CHECK(
      problems_of(partial_rules(), items("blk.0.items", {1, 4, 9}), 2) ==
      std::vector<std::string>{"blk.0.items: 2 items of 3 (1,4,9) are out of range for n_items=4 (the rules' "
                               "default; give --n-items; " +
                               kItems + ")"});
}

TEST_CASE("a partial rule cannot infer its count") {
  std::string rules_text = partial_rules();
  rules_text.replace(rules_text.find("default: 4,"), 11, "default: infer,");
  CHECK_THROWS_WITH(
      rules::Rules::load_text(rules_text, "x.yaml"),
      Catch::Contains("x.yaml:41:14: a partial ownership rule needs a given count: parameter 'n_items' "
                      "says 'default: infer'"));
  std::string maybe = kPlanRules;
  maybe.replace(maybe.find("    count: n_items\n"), 19, "    count: n_items\n    partial: maybe\n");
  CHECK_THROWS_WITH(
      rules::Rules::load_text(maybe, "x.yaml"),
      Catch::Contains("x.yaml:41:14: 'partial' of ownership rule must be true or false, got 'maybe'"));
}

TEST_CASE("owned tensors of a given count, placed as they are decided, land as those of an inferred one") {
  // A given count places each owned tensor at once; an inferred one waits for the whole checkpoint.
  // Both must give every rank the same tensors, in the same order, with the same placement.
  const auto tensors = items("blk.0.items", {0, 1, 2, 3}, {"col.weight", "row.weight"}) +
                       items("blk.1.items", {0, 1, 2, 3}) +
                       std::vector<TensorSpec>{{"a.weight", DType::BF16, {4, 2}}};
  const Plan given = plan_with(kPlanRules, tensors, 2, {{"n_items", 4}});
  const Plan inferred = plan_with(infer_rules(), tensors, 2);
  const auto ranks = [](const Plan& plan) {
    std::vector<std::vector<std::string>> rows(plan.outputs.size());
    for (const auto& out : plan.outputs) {
      for (const auto& t : out.tensors) {
        rows[out.rank].push_back(fmt::format("{} {} {}/{} {}", t.name, t.source, t.placement.index,
                                             t.placement.count, static_cast<int>(t.placement.kind)));
      }
    }
    return rows;
  };
  const auto placed = ranks(given);
  CHECK(placed == ranks(inferred));
  const std::vector<std::string>& second = placed[1];
  CHECK(std::find(second.begin(), second.end(), "blk.0.items.2.col.weight 5 2/4 2") != second.end());
}
