// diff of JSON plans: a one-line rules edit lists exactly the tensors it moves, a plan diffed with
// itself nothing, any field a tensor's JSON holds is compared, and files that are not plans are
// refused with the file, the place and the reason.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan_diff.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;
using plan::PlanDiff;
using plan::TensorChangeKind;
using st::DType;

namespace {

std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

// A checkpoint with a column-split, a row-split, a replicated, an owned and a skipped tensor.
void write_small(const TempDir& dir) {
  write_checkpoint_file(dir / "a.safetensors", std::vector<TensorSpec>{
                                                   {"blk.0.col.weight", DType::BF16, {8, 4}},
                                                   {"blk.0.row.weight", DType::F16, {6, 8}},
                                                   {"blk.1.row.weight", DType::F16, {6, 8}},
                                                   {"blk.0.rep.weight", DType::BF16, {4}},
                                                   {"blk.0.items.1.col.weight", DType::BF16, {8, 4}},
                                                   {"blk.0.x.extra", DType::BF16, {2}},
                                               });
}

// The small checkpoint holds one of the rules' items: the ownership rule is marked partial.
std::string json_plan(const TempDir& dir, const std::string& rules_text, std::uint64_t mp = 2) {
  const rules::Rules rules = rules::Rules::load_text(
      replace_once(rules_text, "    count: n_items\n", "    count: n_items\n    partial: true\n"),
      "plan-test.yaml");
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  return plan::format_plan_json(plan::plan_checkpoint(checkpoint, rules, {mp, {}}));
}

std::vector<std::string> names(const PlanDiff& diff, TensorChangeKind kind) {
  std::vector<std::string> out;
  for (const auto& t : diff.tensors()) {
    if (t.kind == kind) out.push_back(t.name);
  }
  return out;
}

std::string fields_of(const PlanDiff& diff, const std::string& name) {
  for (const auto& t : diff.tensors()) {
    if (t.name != name) continue;
    std::string text;
    for (const auto& f : t.fields) text += f.field + ": " + f.old_value + " -> " + f.new_value + "\n";
    return text;
  }
  return "not listed";
}

}  // namespace

TEST_CASE("diff: a plan compared with itself has no difference") {
  TempDir dir;
  write_small(dir);
  const std::string a = json_plan(dir, kPlanRules);
  const PlanDiff diff = plan::diff_plans(a, "a.json", a, "b.json");
  CHECK_FALSE(diff.differ());
  CHECK(diff.same == 6);
  CHECK(diff.old_tensors == 6);
  CHECK(plan::format_plan_diff_text(diff).ends_with("\nthe plans place all 6 source tensors the same way\n"));
}

TEST_CASE("diff: a one-line rules edit lists exactly the tensors it moves, old -> new") {
  TempDir dir;
  write_small(dir);
  const std::string before = json_plan(dir, kPlanRules);
  // The edit also moves every rule below it by no line, but the rule labels are not compared anyway.
  const std::string after =
      json_plan(dir, replace_once(kPlanRules, "row:   {split: in}", "row:   {split: replicate}"));
  const PlanDiff diff = plan::diff_plans(before, "before.json", after, "after.json");
  CHECK(diff.differ());
  CHECK(names(diff, TensorChangeKind::placement) ==
        std::vector<std::string>{"blk.0.row.weight", "blk.1.row.weight"});
  CHECK(diff.same == 4);
  CHECK(fields_of(diff, "blk.0.row.weight") ==
        "bytes: 48 -> 96\n"
        "shape: [6, 4] -> [6, 8]\n"
        "slice: dim1 2x4 -> whole\n");
  const std::string text = plan::format_plan_diff_text(diff);
  CHECK_THAT(text, Catch::Contains(
                       "\nplaced differently: 2 source tensors\n"
                       "  SOURCE            CHANGES (OLD -> NEW)\n"
                       "  blk.0.row.weight  bytes: 48 -> 96; shape: [6, 4] -> [6, 8]; slice: dim1 2x4 -> "
                       "whole\n"));
  CHECK(
      text.ends_with("\n2 placed differently, 0 only in before.json, 0 only in after.json, 4 the same; 0 "
                     "plan-level changes (of 6 source tensors in before.json, 6 in after.json)\n"));
}

TEST_CASE("diff: moves between ranks, skips and renames are listed") {
  TempDir dir;
  write_small(dir);
  const std::string before = json_plan(dir, kPlanRules);
  std::string rules = replace_once(kPlanRules, "match: '\\.extra$'", "match: '\\.(extra|rep\\.weight)$'");
  rules = replace_once(rules, "old:   {rename: col, split: out}",
                       "old:   {rename: col, split: out}\n  col2: {split: out}");
  const std::string after = json_plan(dir, replace_once(rules, "match: '\\.items\\.", "match: '\\.itemz\\."));
  const PlanDiff diff = plan::diff_plans(before, "a", after, "b");
  CHECK(fields_of(diff, "blk.0.rep.weight") == "placement: placed on all -> skipped\n");
  // No longer owned by rank 0: the items rule no longer matches, so the table splits it.
  CHECK(fields_of(diff, "blk.0.items.1.col.weight") ==
        "ranks: 0 -> all\nbytes: 64 -> 32\nshape: [8, 4] -> [4, 4]\nslice: whole -> dim0 2x4\n");
  CHECK(diff.tensors().size() == 2);
}

TEST_CASE("diff: plans of different checkpoints list the tensors only one has") {
  TempDir a_dir, b_dir;
  write_small(a_dir);
  write_checkpoint_file(b_dir / "a.safetensors", std::vector<TensorSpec>{
                                                     {"blk.0.col.weight", DType::BF16, {8, 4}},
                                                     {"blk.9.rep.weight", DType::BF16, {4}},
                                                 });
  const PlanDiff diff =
      plan::diff_plans(json_plan(a_dir, kPlanRules), "a", json_plan(b_dir, kPlanRules), "b");
  CHECK(names(diff, TensorChangeKind::only_old) ==
        std::vector<std::string>{"blk.0.items.1.col.weight", "blk.0.rep.weight", "blk.0.row.weight",
                                 "blk.0.x.extra", "blk.1.row.weight"});
  CHECK(names(diff, TensorChangeKind::only_new) == std::vector<std::string>{"blk.9.rep.weight"});
  CHECK(diff.same == 1);
  CHECK_THAT(
      plan::format_plan_diff_text(diff),
      Catch::Contains(
          "\nonly in b: 1 source tensor\n  SOURCE            PLACEMENT\n  blk.9.rep.weight  ranks: all; "
          "output: blk.9.rep.weight; slice: whole\n"));
}

TEST_CASE("diff: a different mp changes the rank files and the tensors' placements") {
  TempDir dir;
  write_small(dir);
  const PlanDiff diff =
      plan::diff_plans(json_plan(dir, kPlanRules, 2), "a", json_plan(dir, kPlanRules, 1), "b");
  REQUIRE(diff.plan_changes.size() >= 3);
  CHECK(diff.plan_changes[0].field == "model_parallel");
  CHECK(diff.plan_changes[1].field == "rank 0 file");
  CHECK(diff.plan_changes[1].old_value == "part0-of-2.safetensors");
  CHECK(diff.plan_changes[2].new_value == "absent");
  CHECK(fields_of(diff, "blk.0.rep.weight") == "ranks: all -> 0\n");
}

TEST_CASE("diff: every field of a tensor is compared, also one this version does not know") {
  TempDir dir;
  write_small(dir);
  const std::string before = json_plan(dir, kPlanRules);
  const std::string after = replace_once(before, "\"rule\": \"table[rep]",
                                         "\"transform\": {\"kind\": \"x\"}, \"rule\": \"table[rep]");
  const PlanDiff diff = plan::diff_plans(before, "a", after, "b");
  CHECK(names(diff, TensorChangeKind::placement) == std::vector<std::string>{"blk.0.rep.weight"});
  // Only rank 0's copy has it: values that differ between ranks are listed rank by rank.
  CHECK(fields_of(diff, "blk.0.rep.weight") == "transform: absent -> {\"kind\":\"x\"} absent\n");
  // The rule's label is provenance, not placement.
  const std::string relabelled =
      replace_once(before, "table[rep] (plan-test.yaml:", "table[rep] (other.yaml:");
  CHECK_FALSE(plan::diff_plans(before, "a", relabelled, "b").differ());
}

TEST_CASE("diff: a plan reads the same whether plainly written or not (the fast reader and the full one)") {
  TempDir dir;
  write_small(dir);
  const std::string plain = json_plan(dir, kPlanRules);
  // Reindented with keys in another order: still plain.
  const std::string reindented = nlohmann::ordered_json::parse(plain).dump(3);
  // An escape in a string is left to the full reader.
  const std::string escaped =
      replace_once(plain, "\"name\": \"blk.0.rep.weight\", \"dtype\": \"BF16\", \"shape\": [4], \"slice\"",
                   "\"name\": \"blk.0.rep\\u002eweight\", \"dtype\": \"BF16\", \"shape\": [4], \"slice\"");
  REQUIRE(escaped != plain);
  for (const std::string* other : {&reindented, &escaped}) {
    CHECK_FALSE(plan::diff_plans(plain, "a", *other, "b").differ());
    CHECK_FALSE(plan::diff_plans(*other, "a", plain, "b").differ());
  }
  // The same change (a negative number, a nested object, literals) reads the same by both readers.
  const auto changed = [](const std::string& text) {
    return replace_once(text, "\"rule\": \"table[rep]",
                        "\"z\": {\"b\": [-3, true, null], \"a\": \"x\"}, \"rule\": \"table[rep]");
  };
  const PlanDiff by_plain = plan::diff_plans(plain, "a", changed(plain), "b");
  const PlanDiff by_full = plan::diff_plans(plain, "a", changed(escaped), "b");
  CHECK(names(by_plain, TensorChangeKind::placement) == std::vector<std::string>{"blk.0.rep.weight"});
  CHECK(fields_of(by_plain, "blk.0.rep.weight") ==
        "z: absent -> {\"a\":\"x\",\"b\":[-3,true,null]} absent\n");
  CHECK(fields_of(by_full, "blk.0.rep.weight") == fields_of(by_plain, "blk.0.rep.weight"));
}

TEST_CASE("diff: plans narrowed differently are refused") {
  TempDir dir;
  write_small(dir);
  const rules::Rules rules = rules::Rules::load_text(
      replace_once(kPlanRules, "    count: n_items\n", "    count: n_items\n    partial: true\n"),
      "plan-test.yaml");
  const plan::Plan p = plan::plan_checkpoint(st::Checkpoint::open(dir.str()), rules, {2, {}});
  const std::string whole = plan::format_plan_json(p);
  const std::string rank1 = plan::format_plan_json(p, {std::nullopt, 1, std::nullopt});
  try {
    plan::diff_plans(whole, "a.json", rank1, "b.json");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    CHECK(std::string(e.what()) ==
          "the plans were narrowed differently (filter_rank: null in a.json, 1 in b.json): "
          "make both with the same --filter, --rank and --rule, or with none");
  }
  CHECK_FALSE(plan::diff_plans(rank1, "a", rank1, "b").differ());
}

TEST_CASE("diff: a file that is not a plan is refused with where and why") {
  TempDir dir;
  write_small(dir);
  const std::string good = json_plan(dir, kPlanRules);
  struct Case {
    std::string text;
    std::string message;
  };
  const Case cases[] = {
      {"",
       "p.json: not valid JSON: parse error at line 1, column 1: syntax error while parsing value - "
       "unexpected end "
       "of input; expected '[', '{', or a literal"},
      {good.substr(0, good.find("\"skipped\"")), "p.json: not valid JSON: parse error at line "},
      {"[1, 2]", "p.json: not a shardwise plan: the top level is not an object"},
      {"3", "p.json: the top level: a plan is a JSON object"},
      {"{\"format\": \"x\"}", "p.json: not a shardwise plan: no \"format\": \"shardwise-plan\""},
      {replace_once(good, "\"version\": 1", "\"version\": 2"),
       "p.json: not a shardwise plan: version 2 (this shardwise reads version 1)"},
      {replace_once(good, "\"model_parallel\": 2", "\"model_parallel\": -2"),
       "p.json: not a shardwise plan: the plan.model_parallel is not a non-negative integer"},
      {replace_once(good, "{\"rank\": 1", "{\"rank\": 7"),
       "p.json: not a shardwise plan: outputs[1].rank is 7, but model_parallel is 2"},
      {replace_once(good, "{\"rank\": 1", "{\"rank\": 0"),
       "p.json: not a shardwise plan: outputs[1].rank 0 appears twice"},
      {replace_once(good, "\"source\": {\"file\"", "\"sauce\": {\"file\""),
       "p.json: outputs[0].tensors[0]: no \"source\" object"},
      {replace_once(good, "\"dtype\": \"BF16\", \"shape\"",
                    "\"dtype\": \"BF16\", \"dtype\": \"F16\", \"shape\""),
       "p.json: outputs[0].tensors[0]: the key \"dtype\" appears twice"},
      {replace_once(good, "\"skipped\": [", "\"skipped\": [3, "),
       "p.json: not a shardwise plan: \"skipped\" holds a value that is not an object"},
  };
  for (const Case& c : cases) {
    INFO(c.text.substr(0, 200));
    try {
      plan::diff_plans(c.text, "p.json", good, "good.json");
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK_THAT(e.what(), Catch::StartsWith(c.message));
    }
  }
}

TEST_CASE("diff: the JSON form lists each change with its fields") {
  TempDir dir;
  write_small(dir);
  const std::string before = json_plan(dir, kPlanRules);
  const std::string after =
      json_plan(dir, replace_once(kPlanRules, "row:   {split: in}", "row:   {split: replicate}"));
  const auto doc =
      nlohmann::json::parse(plan::format_plan_diff_json(plan::diff_plans(before, "a", after, "b")));
  CHECK(doc["format"] == "shardwise-plan-diff");
  CHECK(doc["differ"] == true);
  REQUIRE(doc["tensors"].size() == 2);
  CHECK(doc["tensors"][0]["name"] == "blk.0.row.weight");
  CHECK(doc["tensors"][0]["change"] == "placement");
  CHECK(doc["tensors"][0]["fields"][2] ==
        nlohmann::json({{"field", "slice"}, {"old", "dim1 2x4"}, {"new", "whole"}}));
  CHECK(doc["totals"] == nlohmann::json({{"placed_differently", 2},
                                         {"only_old", 0},
                                         {"only_new", 0},
                                         {"same", 4},
                                         {"old_tensors", 6},
                                         {"new_tensors", 6}}));
}

TEST_CASE("diff: names and values that need escaping are compared and shown as they read") {
  TempDir dir;
  write_small(dir);
  const std::string before = json_plan(dir, kPlanRules);
  // A value with a quote and a control byte (its record keeps an escape), a name with a bell and a
  // UTF-8 letter (padded by the columns it takes).
  std::string after =
      replace_once(before, "\"rule\": \"table[rep]", "\"note\": \"a\\\"b\\u0001\", \"rule\": \"table[rep]");
  for (std::size_t at; (at = after.find("\"blk.0.col.weight\"")) != std::string::npos;)
    after.replace(at, 18, "\"blk.0.c\\u00f6l\\u0007.weight\"");
  const PlanDiff diff = plan::diff_plans(before, "a", after, "b");
  // As the first version of diff (a DOM per record, every row formatted then escaped) wrote them.
  CHECK(plan::format_plan_diff_text(diff) ==
        "diff: a -> b\n"
        "\n"
        "placed differently: 1 source tensor\n"
        "  SOURCE            CHANGES (OLD -> NEW)\n"
        "  blk.0.rep.weight  note: absent -> a\"b\\x01 absent\n"
        "\n"
        "only in a: 1 source tensor\n"
        "  SOURCE            PLACEMENT\n"
        "  blk.0.col.weight  ranks: all; output: blk.0.col.weight; slice: dim0 2x4\n"
        "\n"
        "only in b: 1 source tensor\n"
        "  SOURCE                 PLACEMENT\n"
        "  blk.0.c\xc3\xb6l\\x07.weight   ranks: all; output: blk.0.c\xc3\xb6l\\x07.weight; slice: dim0 2x4\n"
        "\n"
        "1 placed differently, 1 only in a, 1 only in b, 4 the same; 0 plan-level changes (of 6 source "
        "tensors in a, 6 in b)\n");
  const std::string json = plan::format_plan_diff_json(diff);
  CHECK_THAT(json, Catch::Contains(
                       "{\"name\":\"blk.0.c\xc3\xb6l\\u0007.weight\",\"change\":\"only_new\",\"fields\":[{"
                       "\"field\":\"ranks\",\"old\":null,\"new\":\"all\"},{\"field\":\"output\",\"old\":null,"
                       "\"new\":\"blk.0.c\xc3\xb6l\\u0007.weight\"},"));
  CHECK_THAT(json,
             Catch::Contains("{\"name\":\"blk.0.rep.weight\",\"change\":\"placement\",\"fields\":[{\"field\":"
                             "\"note\",\"old\":\"absent\",\"new\":\"a\\\"b\\u0001 absent\"}]}"));
}

TEST_CASE("diff: plans read from files (side by side, each with names of its own) diff as plans in memory") {
  TempDir a_dir, b_dir, out;
  write_small(a_dir);
  write_checkpoint_file(b_dir / "a.safetensors", std::vector<TensorSpec>{
                                                     {"blk.0.col.weight", DType::BF16, {8, 4}},
                                                     {"blk.9.rep.weight", DType::BF16, {4}},
                                                     {"blk.0.row.weight", DType::F16, {6, 8}},
                                                 });
  // Other names, in another order, on other ranks: the new plan's names are renumbered.
  const std::vector<std::string> plans = {json_plan(a_dir, kPlanRules, 2), json_plan(a_dir, kPlanRules, 1),
                                          json_plan(b_dir, kPlanRules, 2)};
  for (std::size_t i = 0; i < plans.size(); ++i) {
    for (std::size_t j = 0; j < plans.size(); ++j) {
      const std::string a = (out / "a.json").string(), b = (out / "b.json").string();
      write_file(a, plans[i]);
      write_file(b, plans[j]);
      const PlanDiff from_files = plan::diff_plan_files(a, b);
      const PlanDiff in_memory = plan::diff_plans(plans[i], a, plans[j], b);
      CHECK(from_files.differ() == (i != j));
      CHECK(plan::format_plan_diff_text(from_files) == plan::format_plan_diff_text(in_memory));
      CHECK(plan::format_plan_diff_json(from_files) == plan::format_plan_diff_json(in_memory));
    }
  }
}
