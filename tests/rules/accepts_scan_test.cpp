// `accepts:` conditions answered in one pass over the names (detail::find_witnesses, one RE2::Set
// for all regexes still needed) give the witnesses that searching with each condition alone gives:
// conditions without a witness, a witness in the last name only, regexes shared by conditions that
// are met at different names, dtype-only conditions; and several files judged at once
// (Accepts::judge_all) give each file's own verdict. The section read as rules load (of_rules) is
// the one read from their text, and bundled rules are loaded once until released.
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <shardwise/rules/accepts.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/rules/rules.hpp>

#include "rules/accepts.hpp"
#include "rules/accepts_scan.hpp"
#include "rules/matcher.hpp"
#include "support/support.hpp"

using shardwise::rules::Accepts;
using shardwise::rules::AcceptsCondition;
using shardwise::rules::AcceptsVerdict;
using shardwise::rules::TensorHeader;
using shardwise::rules::detail::Witnesses;
using shardwise::st::DType;

namespace {

struct ConditionSpec {
  const char* match;  // "" : any name
  std::vector<DType> dtypes;
};

std::vector<AcceptsCondition> compile(const std::vector<ConditionSpec>& specs) {
  std::vector<AcceptsCondition> conditions;
  for (const ConditionSpec& spec : specs) {
    AcceptsCondition& condition = conditions.emplace_back();
    condition.pattern = spec.match;
    if (!condition.pattern.empty()) {
      condition.re = std::make_unique<RE2>(condition.pattern, shardwise::rules::detail::rule_regex_options());
      REQUIRE(condition.re->ok());
    }
    condition.dtypes = spec.dtypes;
  }
  return conditions;
}

// The witnesses of one condition, each tensor tested alone in order (how `accepts:` was first judged).
Witnesses one_by_one(const AcceptsCondition& condition, const std::vector<TensorHeader>& tensors) {
  Witnesses found;
  for (const TensorHeader& tensor : tensors) {
    const bool name = !condition.re || RE2::PartialMatch(tensor.name, *condition.re);
    bool dtype = condition.dtypes.empty();
    for (const DType d : condition.dtypes) dtype = dtype || d == tensor.dtype;
    if (name && dtype) {
      found.holds = &tensor;
      return found;
    }
    if (name && condition.re && found.name_only == nullptr) found.name_only = &tensor;
  }
  return found;
}

std::string shown(const TensorHeader* tensor) { return tensor == nullptr ? "-" : std::string(tensor->name); }

// find_witnesses against one_by_one for every condition, the list searched whole and in two halves
// on two threads; returns the witnesses as names ("-": none).
std::vector<std::pair<std::string, std::string>> check_against_one_by_one(
    const std::vector<ConditionSpec>& specs, const std::vector<TensorHeader>& tensors) {
  const std::vector<AcceptsCondition> conditions = compile(specs);
  std::vector<const AcceptsCondition*> pointers;
  for (const AcceptsCondition& condition : conditions) pointers.push_back(&condition);
  const std::vector<Witnesses> together =
      shardwise::rules::detail::find_witnesses(pointers, tensors, SIZE_MAX);
  const std::vector<Witnesses> halves = shardwise::rules::detail::find_witnesses(pointers, tensors, 2);
  REQUIRE(together.size() == conditions.size());
  REQUIRE(halves.size() == conditions.size());
  std::vector<std::pair<std::string, std::string>> names;
  for (std::size_t i = 0; i < conditions.size(); ++i) {
    INFO("condition " << i << ": '" << specs[i].match << "'");
    const Witnesses alone = one_by_one(conditions[i], tensors);
    CHECK(together[i].holds == alone.holds);
    CHECK(halves[i].holds == alone.holds);
    if (alone.holds == nullptr) {
      CHECK(together[i].name_only == alone.name_only);
      CHECK(halves[i].name_only == alone.name_only);
    }
    names.emplace_back(shown(together[i].holds), alone.holds == nullptr ? shown(together[i].name_only) : "-");
  }
  return names;
}

using Names = std::vector<std::pair<std::string, std::string>>;

}  // namespace

TEST_CASE("accepts scan: the witnesses of one pass are those of each condition alone") {
  const std::vector<TensorHeader> tensors = {
      {"a.weight", DType::BF16},
      {"a.weight_scale_inv", DType::F32},
      {"b.qweight", DType::I32},
      {"b.qzeros", DType::I32},
      {"c.weight", DType::F8_E4M3},
      {"c.scale", DType::F8_E8M0},
      {"x.indexer.wk.weight", DType::BF16},
      {"last.g_idx", DType::I32},
  };
  const std::vector<ConditionSpec> specs = {
      {"\\.weight$", {DType::F8_E4M3}},          // met at the 5th name, a name-only match before it
      {"\\.weight$", {}},                        // the same regex, met at the first name
      {"\\.g_idx$", {}},                         // met by the last name only
      {"\\.g_idx$", {DType::F32}},               // never met: a name-only match in the last name
      {"_scale_inv$", {DType::F8_E8M0}},         // never met, name-only at the 2nd name
      {"^model\\.layers\\.[0-9]+\\.", {}},       // never met, no name matches
      {"", {DType::F8_E5M2}},                    // a dtype no tensor has
      {"", {DType::I32}},                        // a dtype alone, met at the 3rd name
      {"(?:^|\\.)indexer\\.", {}},               // unanchored
      {"\\.(?:qweight|qzeros)$", {DType::I32}},  // alternation, met at the 3rd name
  };
  CHECK(check_against_one_by_one(specs, tensors) == Names{{"c.weight", "-"},
                                                          {"a.weight", "-"},
                                                          {"last.g_idx", "-"},
                                                          {"-", "last.g_idx"},
                                                          {"-", "a.weight_scale_inv"},
                                                          {"-", "-"},
                                                          {"-", "-"},
                                                          {"b.qweight", "-"},
                                                          {"x.indexer.wk.weight", "-"},
                                                          {"b.qweight", "-"}});
}

TEST_CASE("accepts scan: no tensors, no conditions, a single regex") {
  CHECK(check_against_one_by_one({{"\\.weight$", {}}, {"", {DType::I32}}}, {}) ==
        Names{{"-", "-"}, {"-", "-"}});
  CHECK(check_against_one_by_one({}, {{"a.weight", DType::BF16}}).empty());
  CHECK(check_against_one_by_one(
            {{"\\.scale$", {DType::F8_E8M0}}},
            {{"a.scale", DType::F32}, {"b.weight", DType::BF16}, {"c.scale", DType::F8_E8M0}}) ==
        Names{{"c.scale", "-"}});
}

TEST_CASE("accepts scan: thousands of names, regexes met early, late and never") {
  // Regexes leave the set as their conditions are met, at different names: each answer must stay
  // the same as searching alone, through every rebuild of the set.
  std::vector<std::string> names;
  std::vector<TensorHeader> tensors;
  for (int layer = 0; layer < 40; ++layer) {
    for (const char* leaf : {"attn.wq_a.qweight", "attn.wq_a.qzeros", "attn.wq_a.scales", "ffn.w1.weight",
                             "ffn.experts.7.w2.weight", "attn_norm.weight"}) {
      names.push_back(fmt::format("layers.{}.{}", layer, leaf));
    }
  }
  names.push_back("layers.39.ffn.experts.7.w2.weight_scale_inv");
  for (std::size_t i = 0; i < names.size(); ++i) {
    const DType dtype = names[i].ends_with("qweight") || names[i].ends_with("qzeros") ? DType::I32
                        : i % 97 == 96                                                ? DType::F8_E4M3
                                                                                      : DType::BF16;
    tensors.push_back({names[i], dtype});
  }
  const std::vector<ConditionSpec> specs = {
      {"\\.qweight$", {DType::I32}},
      {"\\.weight$", {DType::F8_E4M3}},
      {"_scale_inv$", {}},
      {"_scale_inv$", {DType::F32}},
      {"\\.g_idx$", {}},
      {"^layers\\.3[0-9]\\.ffn\\.experts\\.", {}},
      {"\\.experts\\.[0-9]+\\.w[123]\\.weight$", {DType::F8_E4M3}},
      {"kv_a_proj_with_mqa\\.weight$", {}},
      {"", {DType::F8_E4M3}},
  };
  const Names found = check_against_one_by_one(specs, tensors);
  CHECK(found[2] == std::pair<std::string, std::string>{"layers.39.ffn.experts.7.w2.weight_scale_inv", "-"});
  CHECK(found[3] == std::pair<std::string, std::string>{"-", "layers.39.ffn.experts.7.w2.weight_scale_inv"});
  CHECK(found[4] == std::pair<std::string, std::string>{"-", "-"});
}

TEST_CASE("accepts scan: several files judged at once give each file's own verdict") {
  const std::string head = "shardwise: 1\nname: t\noutput: {file: \"m{rank}.safetensors\"}\n";
  const Accepts fp8 =
      Accepts::of_text(head +
                           "accepts:\n"
                           "  require: [{name: FP8 weights, match: '\\.weight$', dtype: [F8_E4M3]}]\n"
                           "  forbid: [{name: packing, match: '\\.qweight$'}]\n",
                       "fp8.yaml");
  const Accepts none = Accepts::of_text(head, "none.yaml");
  const Accepts packed =
      Accepts::of_text(head +
                           "accepts:\n"
                           "  require: [{match: '\\.qweight$', dtype: [I32]}, {match: 'g_idx$'}]\n"
                           "  forbid: [{dtype: [F8_E4M3]}]\n"
                           "  defer_to: [fp8]\n",
                       "packed.yaml");
  const std::vector<TensorHeader> tensors = {
      {"a.weight", DType::BF16}, {"b.qweight", DType::I32}, {"c.weight", DType::F8_E4M3}};
  const Accepts* const all[] = {&fp8, &none, &packed};
  const std::vector<AcceptsVerdict> verdicts = Accepts::judge_all(all, tensors);
  REQUIRE(verdicts.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    const AcceptsVerdict alone = all[i]->judge(tensors);
    CHECK(verdicts[i].declared == alone.declared);
    CHECK(verdicts[i].fits == alone.fits);
    CHECK(verdicts[i].met == alone.met);
    CHECK(verdicts[i].unmet == alone.unmet);
    CHECK(verdicts[i].defer_to == alone.defer_to);
  }
  CHECK(verdicts[0].unmet == std::vector<std::string>{"refuses packing: b.qweight (I32)"});
  CHECK(verdicts[0].met == std::vector<std::string>{"FP8 weights"});
  CHECK_FALSE(verdicts[1].declared);
  CHECK(verdicts[2].unmet == std::vector<std::string>{"needs 'g_idx$': no tensor is 'g_idx$'",
                                                      "refuses any name F8_E4M3: c.weight (F8_E4M3)"});
  CHECK(verdicts[2].defer_to == std::vector<std::string>{"fp8"});
}

TEST_CASE("accepts: read as the rules load, the same section as read from their text") {
  const std::vector<TensorHeader> tensors = {
      {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", DType::F8_E4M3},
      {"layers.0.attn.wq_a.qweight", DType::I32},
      {"layers.0.ffn.experts.0.w1.scale", DType::F8_E8M0},
      {"a.weight_scale_inv", DType::F32}};
  const auto same = [&](const Accepts& loaded, const Accepts& read) {
    CHECK(loaded.declared() == read.declared());
    CHECK(loaded.describe() == read.describe());
    const AcceptsVerdict a = loaded.judge(tensors);
    const AcceptsVerdict b = read.judge(tensors);
    CHECK(a.met == b.met);
    CHECK(a.unmet == b.unmet);
    CHECK(a.defer_to == b.defer_to);
  };
  for (const auto& bundled : shardwise::rules::bundled_rules()) {
    INFO(bundled.name);
    const shardwise::rules::Rules rules = shardwise::rules::load_bundled_rules(bundled);
    same(Accepts::of_rules(rules), Accepts::of_named_rules(bundled.name));
    CHECK(Accepts::of_rules(rules).declared());
  }
  shardwise::test::TempDir dir;
  const std::string head = "shardwise: 1\nname: p\noutput: {file: \"m{rank}.safetensors\"}\n";
  shardwise::test::write_file(
      dir / "parent.yaml", head + "accepts: {require: [{match: 'qweight$', dtype: [I32]}], defer_to: [x]}\n");
  shardwise::test::write_file(dir / "inherits.yaml", "shardwise: 1\nextends: parent.yaml\nname: c\n");
  shardwise::test::write_file(dir / "replaces.yaml",
                              "shardwise: 1\nextends: parent.yaml\nname: c\n"
                              "accepts: {forbid: [{dtype: [F32]}]}\n");
  shardwise::test::write_file(dir / "none.yaml", head);
  for (const char* file : {"parent.yaml", "inherits.yaml", "replaces.yaml", "none.yaml"}) {
    INFO(file);
    const std::string path = (dir / file).string();
    same(Accepts::of_rules(shardwise::rules::Rules::load_file(path)), Accepts::of_named_rules(path));
  }
  CHECK(Accepts::of_rules(shardwise::rules::Rules::load_file((dir / "replaces.yaml").string())).describe() ==
        "requires nothing; forbids any name F32");
  CHECK_FALSE(Accepts::of_rules(shardwise::rules::Rules::load_file((dir / "none.yaml").string())).declared());
}

TEST_CASE("bundled rules: loaded once until released, copies outliving the release") {
  const auto& bundled = shardwise::rules::bundled_rules().front();
  const shardwise::rules::Rules first = shardwise::rules::load_bundled_rules(bundled);
  const shardwise::rules::Rules again = shardwise::rules::load_named_rules(bundled.name);
  CHECK(&first.params() == &again.params());  // one compiled form, shared
  CHECK(first.display_name() == "<bundled>/" + bundled.file_name);
  shardwise::rules::release_loaded_bundled_rules();
  const shardwise::rules::Rules reloaded = shardwise::rules::load_bundled_rules(bundled);
  CHECK(&reloaded.params() != &first.params());
  CHECK(first.name() == bundled.name);  // still valid after the release
  CHECK(reloaded.name() == bundled.name);
}
