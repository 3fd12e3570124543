// The planner's decision pipeline on checkpoints big enough for its second thread (more than one
// block of 2,048 tensors): the same decisions as deciding each name alone, in order; an error in
// the rules surfaces at the tensor that caused it; a planner that stops early is not kept waiting.

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/decision_stream.hpp"
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
