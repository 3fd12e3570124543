// What the plan views share: rule labels split into name and location, and the row selection of
// --rank, --rule and --filter with its usage errors.

#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include <shardwise/plan/plan_view.hpp>
#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;
using plan::detail::split_rule_label;

TEST_CASE("a rule label splits into the rule's name and where it is written") {
  struct Case {
    const char* label;
    const char* name;
    const char* location;
  };
  const Case cases[] = {
      {"table[wq] (rules.yaml:12:5)", "table[wq]", "rules.yaml:12:5"},
      {"skip: mtp (embed) (<bundled>/x.yaml:3:5)", "skip: mtp (embed)", "<bundled>/x.yaml:3:5"},
      {"unknown_keys[norm]", "unknown_keys[norm]", ""},
      {"odd (no close", "odd (no close", ""},
  };
  for (const Case& c : cases) {
    const auto parts = split_rule_label(c.label);
    CHECK(parts.name == c.name);
    CHECK(parts.location == c.location);
  }
}

TEST_CASE("the row selection applies --rank, --rule and --filter together and refuses what cannot apply") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", std::vector<TensorSpec>{
                                                   {"blk.0.col.weight", st::DType::BF16, {8, 4}},
                                                   {"blk.0.rep.weight", st::DType::BF16, {4}},
                                                   {"blk.0.x.extra", st::DType::BF16, {2}},
                                               });
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const plan::Plan p = plan::plan_checkpoint(st::Checkpoint::open(dir.str()), rules, {2, {}});
  const auto shown = [&](const plan::PlanFilter& filter) {
    const plan::detail::RowSelection rows(p, filter);
    std::vector<std::string> names;
    for (const auto& out : p.outputs) {
      for (const auto& t : out.tensors) {
        if (rows.shows(out.rank, t, p.sources[t.source]))
          names.push_back(std::to_string(out.rank) + ":" + t.name);
      }
    }
    for (const auto& s : p.skipped) {
      if (rows.shows(s)) names.push_back("skipped:" + s.name);
    }
    return names;
  };
  using V = std::vector<std::string>;
  CHECK(shown({}) == V{"0:blk.0.col.weight", "0:blk.0.rep.weight", "1:blk.0.col.weight", "1:blk.0.rep.weight",
                       "skipped:blk.0.x.extra"});
  CHECK(shown({std::nullopt, 1, std::nullopt}) == V{"1:blk.0.col.weight", "1:blk.0.rep.weight"});
  CHECK(shown({std::nullopt, std::nullopt, "table[rep]"}) == V{"0:blk.0.rep.weight", "1:blk.0.rep.weight"});
  CHECK(shown({"col", 0, "table[col]"}) == V{"0:blk.0.col.weight"});
  CHECK(shown({"col", 0, "table[rep]"}).empty());
  CHECK(shown({std::nullopt, std::nullopt, "skip: drop-extra"}) == V{"skipped:blk.0.x.extra"});

  struct Bad {
    plan::PlanFilter filter;
    const char* message;
  };
  const Bad bad[] = {
      {{std::nullopt, 2, std::nullopt}, "--rank 2: the plan has ranks 0 to 1 (mp=2)"},
      {{std::nullopt, std::nullopt, "table[cool]"},
       "--rule 'table[cool]': no tensor of this plan was decided by a rule of that name (did you mean "
       "'table[col]'?) "
       "(rules that decided tensors: skip: drop-extra, table[col], table[rep])"},
      {{"(", std::nullopt, std::nullopt}, "invalid --filter pattern '(': missing ): ("},
  };
  for (const Bad& b : bad) {
    try {
      const plan::detail::RowSelection rows(p, b.filter);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      CHECK(std::string(e.what()) == b.message);
    }
  }
}
