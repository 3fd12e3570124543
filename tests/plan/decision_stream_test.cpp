// The planner's decision stream on checkpoints of many blocks: the same decisions as deciding each
// name alone, in order, whoever decides a block (inline, the worker, the placing thread); an error
// in the rules surfaces at the tensor that caused it; a planner that stops early is not kept
// waiting; and the plan made on the threads' path is the plan made inline.

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/decision_stream.hpp"
#include "plan/packed_groups.hpp"
#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;
using plan::detail::DecisionStream;
using Mode = DecisionStream::Mode;

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

// Every way of deciding, with blocks small enough that a few thousand tensors make many of them;
// `shared` with blocks of one tensor makes the two threads trade blocks all the time.
const std::vector<DecisionStream::Setup> kSetups{
    {Mode::automatic, 512}, {Mode::inline_only, 512}, {Mode::consumer_only, 7}, {Mode::consumer_only, 512},
    {Mode::shared, 1},      {Mode::shared, 7},        {Mode::shared, 64},
};

std::string describe(const DecisionStream::Setup& setup) {
  static const char* const kModes[] = {"automatic", "inline_only", "shared", "consumer_only"};
  return fmt::format("{}, blocks of {}", kModes[static_cast<int>(setup.mode)], setup.block);
}

// Whether a tensor's same_*_as_previous may be false although its predecessor is alike: at the
// first tensor of a block the threads decided.
bool starts_block(const DecisionStream::Setup& setup, std::size_t tensor, std::size_t blocks) {
  const bool threads = setup.mode == Mode::shared || setup.mode == Mode::consumer_only ||
                       (setup.mode == Mode::automatic && blocks > 1);
  return threads && tensor % setup.block == 0;
}

// Makes plan_checkpoint's streams use `setup` while it lives.
class PlannerSetup {
 public:
  explicit PlannerSetup(DecisionStream::Setup setup) : saved_(DecisionStream::default_setup()) {
    DecisionStream::default_setup() = setup;
  }
  ~PlannerSetup() { DecisionStream::default_setup() = saved_; }
  PlannerSetup(const PlannerSetup&) = delete;
  PlannerSetup& operator=(const PlannerSetup&) = delete;

 private:
  DecisionStream::Setup saved_;
};

// The JSON plan of the checkpoint in `dir` at mp=2, or the planner's error.
std::string plan_or_error(const TempDir& dir, const std::string& rules_text) {
  try {
    return plan::format_plan_json(plan_folder_with(dir.path(), rules_text, "plan-test.yaml", 2));
  } catch (const Error& e) {
    return fmt::format("error {}: {}", static_cast<int>(e.kind()), e.what());
  }
}

}  // namespace

TEST_CASE("the decision stream gives every tensor, in order, the decision the rules give it alone") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", many_tensors(3 * 512 + 5));
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const rules::Params params = rules.resolve_params({{"mp", 2}});
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  REQUIRE(checkpoint.tensors().size() == 3 * 512 + 5);

  for (const DecisionStream::Setup& setup : kSetups) {
    INFO(describe(setup));
    DecisionStream stream(checkpoint, rules, params, setup);
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
    CHECK_THROWS_AS(stream.next(), std::out_of_range);
  }
}

namespace {

// Runs of owned packed members (scope blk.N.items, groups blk.N.items.I.row), a member renamed
// (block -> blk: its output is not its name), a member cut off its group's run by another tensor.
std::vector<TensorSpec> grouped_tensors(int blocks) {
  std::vector<TensorSpec> tensors;
  for (int b = 0; b < blocks; ++b) {
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
  return tensors;
}

}  // namespace

TEST_CASE("the decision stream says what the placer would otherwise compare names for") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", grouped_tensors(100));
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const rules::Params params = rules.resolve_params({{"mp", 2}});
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  const std::size_t count = checkpoint.tensors().size();
  REQUIRE(count > 2 * 512);

  for (const DecisionStream::Setup& setup : kSetups) {
    INFO(describe(setup));
    DecisionStream stream(checkpoint, rules, params, setup);
    std::unique_ptr<rules::Decision> previous;  // decided alone
    std::map<std::string, std::size_t> seen;
    for (std::size_t t = 0; t < count; ++t) {
      const std::string_view name = checkpoint.tensors()[t].info->name;
      const plan::detail::Decided& got = stream.next();
      rules::Decision alone = rules.decide(name, params, rules::Rules::Trail::omit);
      INFO(name);
      const bool placed = alone.kind == rules::Decision::Kind::place;
      REQUIRE(got.output_is_source == (placed && alone.output == name));
      const auto member = [](const rules::Decision* d) {
        return d && d->kind == rules::Decision::Kind::place && d->layout != nullptr;
      };
      const auto scope = [](const rules::Decision& d) { return d.output.substr(0, d.owner->index_begin); };
      const bool same_group = member(&alone) && member(previous.get()) && previous->layout == alone.layout &&
                              previous->group == alone.group;
      const bool same_scope = placed && alone.owner && previous &&
                              previous->kind == rules::Decision::Kind::place && previous->owner &&
                              previous->owner->rule == alone.owner->rule && scope(*previous) == scope(alone);
      // A block decided by the threads does not know its predecessor: false there, which costs the
      // placer a lookup.
      if (starts_block(setup, t, (count + setup.block - 1) / setup.block)) {
        REQUIRE_FALSE(got.same_group_as_previous);
        REQUIRE_FALSE(got.same_scope_as_previous);
      } else {
        REQUIRE(got.same_group_as_previous == same_group);
        REQUIRE(got.same_scope_as_previous == same_scope);
      }
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
}

TEST_CASE("the decision stream rethrows a rules error at the tensor that caused it") {
  TempDir dir;
  // 2,000 split tensors, then owned ones; deciding those needs n_items, which is not given.
  std::vector<TensorSpec> tensors;
  for (int i = 0; i < 2000; ++i)
    tensors.push_back({fmt::format("a.{:05}.col.weight", i), st::DType::BF16, {8, 4}});
  tensors.push_back({"b.items.3.col.weight", st::DType::BF16, {8, 4}});
  tensors.push_back({"b.items.4.col.weight", st::DType::BF16, {8, 4}});
  for (int i = 0; i < 1000; ++i)
    tensors.push_back({fmt::format("c.{:05}.col.weight", i), st::DType::BF16, {8, 4}});
  write_checkpoint_file(dir / "a.safetensors", tensors);
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const rules::Params without_items{{"mp", 2}};
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());

  for (const DecisionStream::Setup& setup : kSetups) {
    INFO(describe(setup));
    DecisionStream stream(checkpoint, rules, without_items, setup);
    for (int i = 0; i < 2000; ++i) REQUIRE(stream.next().kind == rules::Decision::Kind::place);
    try {
      stream.next();
      FAIL("deciding an owned tensor without its count parameter succeeded");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      CHECK_THAT(e.what(), Catch::Contains("parameter 'n_items' needed by plan-test.yaml:"));
    }
  }
}

TEST_CASE("a planner that stops early does not wait for the decision stream") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", many_tensors(20 * 512));
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const rules::Params params = rules.resolve_params({{"mp", 2}});
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  for (const DecisionStream::Setup& setup : kSetups) {
    for (const std::size_t taken : {std::size_t{0}, std::size_t{1}, std::size_t{512 * 5 + 7}}) {
      DecisionStream stream(checkpoint, rules, params, setup);
      for (std::size_t i = 0; i < taken; ++i) stream.next();
    }  // each stream stops its worker and joins it here
  }
  SUCCEED();
}

TEST_CASE("the planner makes the same plan, and the same errors, whoever decides the names") {
  const std::string rules_text = kPlanRules;
  TempDir good, bad;
  // Owned packed groups in runs, renamed tensors, skips: planned. The same with an owned tensor
  // under one index only and a group missing a member: the scopes' and groups' problems.
  std::vector<TensorSpec> tensors;
  for (int b = 0; b < 150; ++b) {
    for (int i = 0; i < 4; ++i)
      tensors = tensors + packed(fmt::format("blk.{:03}.items.{}.row", b, i), 64, 256);
    tensors.push_back({fmt::format("model.block.{:03}.old.weight", b), st::DType::BF16, {8, 4}});
    tensors.push_back({fmt::format("blk.{:03}.norm.extra", b), st::DType::BF16, {8}});
    tensors = tensors + packed(fmt::format("blk.{:03}.col", b), 32, 256);
  }
  write_checkpoint_file(good / "a.safetensors", tensors);
  tensors.erase(tensors.begin() + 1000);
  tensors.insert(tensors.begin() + 2000, {"blk.077.items.2.row.r.weight", st::DType::BF16, {8, 4}});
  write_checkpoint_file(bad / "a.safetensors", tensors);

  const std::string good_plan = [&] {
    const PlannerSetup inline_only({Mode::inline_only, 512});
    return plan_or_error(good, rules_text);
  }();
  const std::string bad_plan = [&] {
    const PlannerSetup inline_only({Mode::inline_only, 512});
    return plan_or_error(bad, rules_text);
  }();
  REQUIRE(good_plan.starts_with("{"));
  REQUIRE(bad_plan.starts_with("error"));
  for (const DecisionStream::Setup& setup : kSetups) {
    INFO(describe(setup));
    const PlannerSetup threads(setup);
    CHECK(plan_or_error(good, rules_text) == good_plan);
    CHECK(plan_or_error(bad, rules_text) == bad_plan);
  }
}
