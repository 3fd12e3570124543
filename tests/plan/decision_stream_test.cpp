// The planner's decision pipeline on checkpoints big enough for its second thread (more than one
// block of 2,048 tensors): the same decisions as deciding each name alone, in order; an error in
// the rules surfaces at the tensor that caused it; a planner that stops early is not kept waiting.

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/decision_stream.hpp"
#include "plan/packed_groups.hpp"
#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;
using plan::detail::DecisionStream;

namespace {

// `count` tensors of every kind the test rules decide: split, owned, skipped, unmatched.
std::vector<TensorSpec> many_tensors(std::size_t count) {
  std::vector<TensorSpec> tensors;
  for (std::size_t i = 0; tensors.size() < count; ++i) {
    const std::string block = fmt::format("blk.{:05}", i);
    for (const std::string& name :
         {block + ".col.weight", block + ".items.3.row.weight", block + ".x.extra", block + ".lonely.bias"}) {
      if (tensors.size() < count) tensors.push_back({name, st::DType::BF16, {8, 4}});
    }
  }
  return tensors;
}

}  // namespace

TEST_CASE("the decision pipeline gives every tensor, in order, the decision the rules give it alone") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", many_tensors(3 * 2048 + 5));
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const rules::Params params = rules.resolve_params({{"mp", 2}});
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  REQUIRE(checkpoint.tensors().size() == 3 * 2048 + 5);

  DecisionStream stream(checkpoint, rules, params);
  std::map<rules::Decision::Kind, std::size_t> kinds;
  for (const st::TensorRef& ref : checkpoint.tensors()) {
    const rules::Decision& got = stream.next();
    const rules::Decision alone = rules.decide(ref.info->name, params, rules::Rules::Trail::omit);
    INFO(ref.info->name);
    REQUIRE(got.source == ref.info->name);
    REQUIRE(got.kind == alone.kind);
    REQUIRE(got.output == alone.output);
    REQUIRE(got.rule == alone.rule);
    REQUIRE(got.reason == alone.reason);
    REQUIRE(got.owner.has_value() == alone.owner.has_value());
    if (got.owner) REQUIRE(got.owner->index == alone.owner->index);
    ++kinds[got.kind];
  }
  CHECK(kinds[rules::Decision::Kind::place] > 0);
  CHECK(kinds[rules::Decision::Kind::skip] > 0);
  CHECK(kinds[rules::Decision::Kind::unmatched] > 0);
}

TEST_CASE("the decision pipeline says what the placer would otherwise compare names for") {
  TempDir dir;
  // Runs of owned packed members (scope blk.N.items, groups blk.N.items.I.row), a member renamed
  // (block -> blk: its output is not its name), a member cut off its group's run by another tensor.
  std::vector<TensorSpec> tensors;
  for (int b = 0; b < 400; ++b) {
    for (int i = 0; i < 4; ++i) {
      const std::string group = fmt::format("blk.{:03}.items.{}.row", b, i);
      tensors.push_back({group + ".qweight", st::DType::I32, {16, 32}});
      tensors.push_back({group + ".qzeros", st::DType::I32, {1, 4}});
      if (b % 7 == 3 && i == 2) tensors.push_back({group + ".r.weight", st::DType::BF16, {8, 4}});
      tensors.push_back({group + ".scales", st::DType::F16, {1, 32}});
    }
    tensors.push_back({fmt::format("blk.{:03}.z.col.weight", b), st::DType::BF16, {8, 4}});
    tensors.push_back({fmt::format("model.block.{:03}.items.0.row.qweight", b), st::DType::I32, {16, 32}});
  }
  write_checkpoint_file(dir / "a.safetensors", tensors);
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const rules::Params params = rules.resolve_params({{"mp", 2}});
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  REQUIRE(checkpoint.tensors().size() > 2 * 2048);

  DecisionStream stream(checkpoint, rules, params);
  std::unique_ptr<rules::Decision> previous;  // decided alone
  std::map<std::string, std::size_t> seen;
  for (const st::TensorRef& ref : checkpoint.tensors()) {
    const plan::detail::Decided& got = stream.next();
    rules::Decision alone = rules.decide(ref.info->name, params, rules::Rules::Trail::omit);
    INFO(ref.info->name);
    const bool placed = alone.kind == rules::Decision::Kind::place;
    REQUIRE(got.output_is_source == (placed && alone.output == ref.info->name));
    const auto member = [](const rules::Decision* d) {
      return d && d->kind == rules::Decision::Kind::place && d->layout != nullptr;
    };
    const auto scope = [](const rules::Decision& d) { return d.output.substr(0, d.owner->index_begin); };
    const bool same_group = member(&alone) && member(previous.get()) && previous->layout == alone.layout &&
                            previous->group == alone.group;
    const bool same_scope = placed && alone.owner && previous &&
                            previous->kind == rules::Decision::Kind::place && previous->owner &&
                            previous->owner->rule == alone.owner->rule && scope(*previous) == scope(alone);
    REQUIRE(got.same_group_as_previous == same_group);
    REQUIRE(got.same_scope_as_previous == same_scope);
    if (member(&alone)) {
      REQUIRE(got.group_hash == plan::detail::PackedGroups::hash(alone.layout, alone.group));
      ++seen[same_group ? "same group" : "new group"];
    }
    if (alone.owner) ++seen[same_scope ? "same scope" : "new scope"];
    if (placed && !got.output_is_source) ++seen["renamed"];
    previous = std::make_unique<rules::Decision>(std::move(alone));
  }
  CHECK(seen["same group"] > 0);
  CHECK(seen["new group"] > 0);
  CHECK(seen["same scope"] > 0);
  CHECK(seen["new scope"] > 0);
  CHECK(seen["renamed"] > 0);
}

TEST_CASE("the decision pipeline rethrows a rules error at the tensor that caused it") {
  TempDir dir;
  // 5,000 split tensors, then owned ones; deciding those needs n_items, which is not given.
  std::vector<TensorSpec> tensors;
  for (int i = 0; i < 5000; ++i)
    tensors.push_back({fmt::format("a.{:05}.col.weight", i), st::DType::BF16, {8, 4}});
  tensors.push_back({"b.items.3.col.weight", st::DType::BF16, {8, 4}});
  tensors.push_back({"b.items.4.col.weight", st::DType::BF16, {8, 4}});
  write_checkpoint_file(dir / "a.safetensors", tensors);
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const rules::Params without_items{{"mp", 2}};
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());

  DecisionStream stream(checkpoint, rules, without_items);
  for (int i = 0; i < 5000; ++i) REQUIRE(stream.next().kind == rules::Decision::Kind::place);
  try {
    stream.next();
    FAIL("deciding an owned tensor without its count parameter succeeded");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    CHECK_THAT(e.what(), Catch::Contains("parameter 'n_items' needed by plan-test.yaml:"));
  }
}

TEST_CASE("a planner that stops early does not wait for the decision pipeline") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", many_tensors(20 * 2048));
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const rules::Params params = rules.resolve_params({{"mp", 2}});
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  for (const std::size_t taken : {std::size_t{0}, std::size_t{1}, std::size_t{2048 * 5 + 7}}) {
    DecisionStream stream(checkpoint, rules, params);
    for (std::size_t i = 0; i < taken; ++i) stream.next();
  }  // each stream stops its worker and joins it here
  SUCCEED();
}
