// plan_checkpoint on small hand-built checkpoints: every kind of placement with its slices, casts
// and byte counts; packed groups spanning files; every validation error with its exact message.

#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;
using plan::Cast;
using plan::Plan;
using plan::PlannedTensor;
using st::DType;

namespace {

Plan plan_folder(const TempDir& dir, std::uint64_t mp, rules::Params params = {}) {
  return plan_folder_with(dir.path(), kPlanRules, "plan-test.yaml", mp, std::move(params));
}

// The problems listed by a failed plan, one per line, without the heading (it names the temp dir).
std::vector<std::string> plan_problems(const TempDir& dir, std::uint64_t mp, rules::Params params = {}) {
  try {
    plan_folder(dir, mp, std::move(params));
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    return problem_lines(e.what());
  }
  FAIL("the plan succeeded");
  return {};
}

}  // namespace

TEST_CASE("plan places every kind of tensor with its slices, casts and bytes") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors",
                        std::vector<TensorSpec>{
                            {"model.block.0.col.weight", DType::BF16, {8, 4}},
                            {"blk.0.row.weight", DType::F32, {6, 8}},
                            {"blk.0.rep.weight", DType::BF16, {3}},
                            {"blk.1.old.weight", DType::BF16, {4, 2}},
                            {"blk.0.shared.col.weight", DType::BF16, {2, 2}},
                            {"blk.0.items.0.col.weight", DType::BF16, {2, 2}},
                            {"blk.0.items.1.col.weight", DType::BF16, {2, 2}},
                            {"blk.0.items.2.col.weight", DType::BF16, {2, 2}},
                            {"blk.0.items.3.col.weight", DType::BF16, {2, 2}},
                            {"blk.0.thing.weight", DType::F32, {5}},
                            {"blk.0.norm.extra", DType::F32, {5}},
                        } + packed("blk.0.col", 32, 256) +
                            packed("blk.0.row", 16, 256, DType::F32));
  write_file(dir / "vocab.txt", "x");
  const Plan plan = plan_folder(dir, 2);

  REQUIRE(plan.outputs.size() == 2);
  CHECK(plan.outputs[0].file == "part0-of-2.safetensors");
  CHECK(plan.outputs[1].file == "part1-of-2.safetensors");
  CHECK(plan.side_files == std::vector<std::string>{"vocab.txt"});
  CHECK(plan.params == std::map<std::string, std::uint64_t>{{"mp", 2}, {"n_items", 4}});
  REQUIRE(plan.skipped.size() == 1);
  CHECK(plan.skipped[0].name == "blk.0.norm.extra");
  CHECK(plan.skipped[0].file == "a.safetensors");
  CHECK(plan.skipped[0].rule == "skip: drop-extra (plan-test.yaml:14:5)");
  CHECK(plan.skipped[0].reason == "not used at inference");

  struct Expected {
    std::uint64_t rank;
    std::string name, source;
    DType dtype;
    st::Shape shape;
    int dim;
    std::uint64_t begin, end;
    Cast cast;
  };
  const Expected table[] = {
      {0, "blk.0.col.weight", "model.block.0.col.weight", DType::BF16, {4, 4}, 0, 0, 4, Cast::none},
      {1, "blk.0.col.weight", "model.block.0.col.weight", DType::BF16, {4, 4}, 0, 4, 8, Cast::none},
      {0, "blk.0.row.weight", "blk.0.row.weight", DType::F32, {6, 4}, 1, 0, 4, Cast::none},
      {1, "blk.0.row.weight", "blk.0.row.weight", DType::F32, {6, 4}, 1, 4, 8, Cast::none},
      {0, "blk.0.rep.weight", "blk.0.rep.weight", DType::BF16, {3}, -1, 0, 0, Cast::none},
      {1, "blk.0.rep.weight", "blk.0.rep.weight", DType::BF16, {3}, -1, 0, 0, Cast::none},
      {1, "blk.1.col.weight", "blk.1.old.weight", DType::BF16, {2, 2}, 0, 2, 4, Cast::none},
      {1, "blk.0.shared.col.weight", "blk.0.shared.col.weight", DType::BF16, {2, 2}, -1, 0, 0, Cast::none},
      {0, "blk.0.items.1.col.weight", "blk.0.items.1.col.weight", DType::BF16, {2, 2}, -1, 0, 0, Cast::none},
      {1, "blk.0.items.3.col.weight", "blk.0.items.3.col.weight", DType::BF16, {2, 2}, -1, 0, 0, Cast::none},
      {0, "blk.0.thing.weight", "blk.0.thing.weight", DType::F32, {5}, -1, 0, 0, Cast::none},
      // Packed, split out (logical out = 32): 16 columns, 2 packed columns of qzeros, per rank.
      {1, "blk.0.col.qweight", "blk.0.col.qweight", DType::I32, {32, 16}, 1, 16, 32, Cast::none},
      {1, "blk.0.col.qzeros", "blk.0.col.qzeros", DType::I32, {2, 2}, 1, 2, 4, Cast::none},
      {1, "blk.0.col.scales", "blk.0.col.scales", DType::BF16, {2, 16}, 1, 16, 32, Cast::f16_to_bf16},
      // Packed, split in (logical in = 256): 16 packed rows of qweight, one group row of the others.
      {1, "blk.0.row.qweight", "blk.0.row.qweight", DType::I32, {16, 16}, 0, 16, 32, Cast::none},
      {1, "blk.0.row.qzeros", "blk.0.row.qzeros", DType::I32, {1, 2}, 0, 1, 2, Cast::none},
      {0, "blk.0.row.scales", "blk.0.row.scales", DType::BF16, {1, 16}, 0, 0, 1, Cast::f32_to_bf16},
  };
  for (const Expected& e : table) {
    INFO(e.name << " on rank " << e.rank);
    const PlannedTensor& t = find(plan, e.rank, e.name);
    CHECK(plan.sources[t.source].name == e.source);
    CHECK(t.dtype == e.dtype);
    CHECK(t.shape == e.shape);
    CHECK(t.slice.dim == e.dim);
    CHECK(t.slice.begin == e.begin);
    CHECK(t.slice.end == e.end);
    CHECK(t.cast == e.cast);
    CHECK(t.bytes == *st::byte_size(e.dtype, e.shape));
  }
  CHECK(plan.rule_labels.at(find(plan, 0, "blk.0.col.qweight").rule) == "table[col] (plan-test.yaml:29:3)");
  CHECK(plan.rule_labels.at(find(plan, 1, "blk.0.items.3.col.weight").rule) ==
        "ownership[items] (plan-test.yaml:38:5)");

  // Owned tensors exist on their rank only; every rank's tensors are sorted by name.
  CHECK(plan.outputs[0].tensors.size() == 14);  // 12 split or replicated, items 0 and 1
  CHECK(plan.outputs[1].tensors.size() == 14);  // the same 12, items 2 and 3
  for (const auto& out : plan.outputs) {
    CHECK(std::is_sorted(out.tensors.begin(), out.tensors.end(),
                         [](const PlannedTensor& a, const PlannedTensor& b) { return a.name < b.name; }));
    std::uint64_t bytes = 0;
    for (const auto& t : out.tensors) bytes += t.bytes;
    CHECK(out.bytes == bytes);
  }
  // Copies beyond the first: rep (6 B), shared (8 B), thing (20 B).
  CHECK(plan.replicated_bytes == 6 + 8 + 20);
}

TEST_CASE("plan gives every rank a file, even an empty one") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", {{"blk.items.0.col.weight", DType::BF16, {2}}});
  std::string partial = kPlanRules;  // one item of four: the rule must allow a partial scope
  partial.replace(partial.find("    count: n_items\n"), 19, "    count: n_items\n    partial: true\n");
  const Plan plan = plan::plan_checkpoint(st::Checkpoint::open(dir.str()),
                                          rules::Rules::load_text(partial, "plan-test.yaml"), {4, {}});
  REQUIRE(plan.outputs.size() == 4);
  CHECK(plan.outputs[0].tensors.size() == 1);
  CHECK(plan.outputs[3].tensors.empty());
  CHECK(plan.outputs[3].file == "part3-of-4.safetensors");
}

TEST_CASE("a packed group whose members sit in two files is planned as if in one") {
  TempDir one, two;
  const auto triple = packed("blk.0.col", 64, 256);
  write_checkpoint_file(one / "a.safetensors", triple);
  write_checkpoint_file(two / "a.safetensors", {triple[0]});
  write_checkpoint_file(two / "b.safetensors", {triple[1], triple[2]});
  const Plan a = plan_folder(one, 4);
  const Plan b = plan_folder(two, 4);
  REQUIRE(b.input_files.size() == 2);
  for (std::uint64_t rank = 0; rank < 4; ++rank) {
    REQUIRE(a.outputs[rank].tensors.size() == 3);
    REQUIRE(b.outputs[rank].tensors.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      const PlannedTensor& x = a.outputs[rank].tensors[i];
      const PlannedTensor& y = b.outputs[rank].tensors[i];
      CHECK(x.name == y.name);
      CHECK(x.shape == y.shape);
      CHECK(x.slice.begin == y.slice.begin);
      CHECK(x.slice.end == y.slice.end);
      CHECK(x.cast == y.cast);
    }
  }
  CHECK(b.sources[find(b, 0, "blk.0.col.qweight").source].file == 0);
  CHECK(b.sources[find(b, 0, "blk.0.col.scales").source].file == 1);
}

TEST_CASE("plan reports each problem with the tensors and numbers") {
  struct Case {
    const char* what;
    std::vector<TensorSpec> a, b;  // tensors of a.safetensors and (when not empty) b.safetensors
    std::uint64_t mp;
    rules::Params params;
    std::vector<std::string> problems;
  };
  const Case cases[] = {
      {"unmatched",
       {{"blk.0.odd", DType::F32, {2}}},
       {},
       1,
       {},
       {"blk.0.odd (a.safetensors): no rule places it: no key rule matches 'blk.0.odd'"}},
      {"missing member, members in two files",
       {packed("blk.0.col", 64, 256)[0]},
       {packed("blk.0.col", 64, 256)[2]},
       1,
       {},
       {"blk.0.col: incomplete packed group (packed): missing qzeros; present: blk.0.col.qweight "
        "(a.safetensors), "
        "blk.0.col.scales (b.safetensors)"}},
      {"member twice",
       packed("blk.0.col", 64, 256) +
           std::vector<TensorSpec>{{"model.blk.0.col.qweight", DType::I32, {32, 64}}},
       {},
       1,
       {},
       {"blk.0.col: member qweight of packed layout packed is given twice, by blk.0.col.qweight "
        "(a.safetensors) and "
        "model.blk.0.col.qweight (a.safetensors)"}},
      {"split cuts a packing unit",
       packed("blk.0.col", 64, 128),
       {},
       16,
       {},
       {"blk.0.col.qzeros: 8 packed columns cannot be split over mp=16 (out=64, 4 per rank, packing 8)"}},
      {"split cuts a quantisation group",
       packed("blk.0.row", 16, 256),
       {},
       4,
       {},
       {"blk.0.row.qzeros: 2 packed rows cannot be split over mp=4 (in=256, 64 per rank, packing 128)",
        "blk.0.row.scales: 2 packed rows cannot be split over mp=4 (in=256, 64 per rank, packing 128)"}},
      {"packed out not a multiple of mp",
       packed("blk.0.col", 24, 128),
       {},
       16,
       {},
       {"blk.0.col.qweight: 24 columns cannot be split over mp=16 (dim 1 of [16, 24]: 24 is not a multiple "
        "of 16)",
        "blk.0.col.qzeros: 3 packed columns cannot be split over mp=16 (out=24 is not a multiple of 16, "
        "packing 8)",
        "blk.0.col.scales: 24 columns cannot be split over mp=16 (dim 1 of [1, 24]: 24 is not a multiple of "
        "16)"}},
      {"plain split",
       {{"blk.0.col.weight", DType::BF16, {6, 4}}},
       {},
       4,
       {},
       {"blk.0.col.weight: 6 rows cannot be split over mp=4 (dim 0 of [6, 4]: 6 is not a multiple of 4)"}},
      {"plain split without the dim",
       {{"blk.0.row.weight", DType::BF16, {8}}},
       {},
       2,
       {},
       {"blk.0.row.weight: cannot split in over mp=2: it has no dim 1 (shape [8])"}},
      {"two sources, one output",
       {{"blk.1.col.weight", DType::BF16, {4}}, {"blk.1.old.weight", DType::BF16, {4}}},
       {},
       2,
       {},
       {"blk.1.col.weight: output name produced twice on every rank, by blk.1.col.weight (a.safetensors) and "
        "by "
        "blk.1.old.weight (a.safetensors)"}},
      {"two sources, one output, one rank",
       {{"blk.items.0.col.weight", DType::BF16, {4}},
        {"blk.items.1.col.weight", DType::BF16, {4}},
        {"model.blk.items.1.col.weight", DType::BF16, {4}},
        {"blk.items.2.col.weight", DType::BF16, {4}},
        {"blk.items.3.col.weight", DType::BF16, {4}}},
       {},
       2,
       {},
       {"blk.items.1.col.weight: output name produced twice on rank 0, by blk.items.1.col.weight "
        "(a.safetensors) and "
        "by model.blk.items.1.col.weight (a.safetensors)"}},
      {"member dtype",
       {{"blk.0.col.qweight", DType::I32, {32, 64}},
        {"blk.0.col.qzeros", DType::F32, {2, 8}},
        {"blk.0.col.scales", DType::F16, {2, 64}}},
       {},
       1,
       {},
       {"blk.0.col.qzeros: dtype F32 is not allowed for member qzeros of packed layout packed (allowed: "
        "I32)"}},
      {"members disagree",
       {{"blk.0.col.qweight", DType::I32, {32, 32}},
        {"blk.0.col.qzeros", DType::I32, {1, 4}},
        {"blk.0.col.scales", DType::F16, {2, 32}}},
       {},
       1,
       {},
       {"blk.0.col: the members of packed layout packed disagree on in: qweight blk.0.col.qweight I32[32, "
        "32] "
        "gives in=256; qzeros blk.0.col.qzeros I32[1, 4] gives in=128; scales blk.0.col.scales F16[2, 32] "
        "gives "
        "in=256; with out=32 and in=256, as most members say, qzeros fits [in/256, out/8], where the layout "
        "says "
        "[in/128, out/8]: the checkpoint is packed differently than layout packed describes (another packing "
        "or group "
        "size: write a layout for it)"}},
      {"AWQ packing under a GPTQ layout",
       {{"blk.0.col.qweight", DType::I32, {256, 8}},
        {"blk.0.col.qzeros", DType::I32, {2, 8}},
        {"blk.0.col.scales", DType::F16, {2, 64}}},
       {},
       1,
       {},
       {"blk.0.col: the members of packed layout packed disagree on out: qweight blk.0.col.qweight I32[256, "
        "8] gives "
        "out=8; qzeros blk.0.col.qzeros I32[2, 8] gives out=64; scales blk.0.col.scales F16[2, 64] gives "
        "out=64; on "
        "in: qweight blk.0.col.qweight I32[256, 8] gives in=2048; qzeros blk.0.col.qzeros I32[2, 8] gives "
        "in=256; "
        "scales blk.0.col.scales F16[2, 64] gives in=256; with out=64 and in=256, as most members say, "
        "qweight fits "
        "[in, out/8], where the layout says [in/8, out]: the checkpoint is packed differently than layout "
        "packed "
        "describes (another packing or group size: write a layout for it)"}},
  };
  for (const Case& c : cases) {
    SECTION(c.what) {
      TempDir dir;
      write_checkpoint_file(dir / "a.safetensors", c.a);
      if (!c.b.empty()) write_checkpoint_file(dir / "b.safetensors", c.b);
      CHECK(plan_problems(dir, c.mp, c.params) == c.problems);
    }
  }
}

TEST_CASE("plan reports every problem of a checkpoint in one run") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", std::vector<TensorSpec>{
                                                   {"blk.0.odd", DType::F32, {2}},
                                                   {"blk.0.col.weight", DType::BF16, {6, 4}},
                                                   {"blk.0.items.7.col.weight", DType::BF16, {2}},
                                               } + packed("blk.1.col", 64, 128));
  const auto problems = plan_problems(dir, 16);
  CHECK(problems.size() == 5);  // the owned item is out of range, and n_items=4 is not a multiple of 16
  try {
    plan_folder(dir, 16);
  } catch (const Error& e) {
    const std::string heading = "cannot plan " + dir.str() + " for mp=16 with plan-test.yaml (5 problems):\n";
    CHECK(std::string(e.what()).rfind(heading, 0) == 0);
  }
}

TEST_CASE("plan refuses model parallelism out of range") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", {{"blk.0.rep.weight", DType::F32, {2}}});
  for (std::uint64_t mp : {std::uint64_t{0}, plan::kMaxModelParallel + 1}) {
    try {
      plan_folder(dir, mp);
      FAIL("accepted mp=" << mp);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      CHECK(std::string(e.what()) ==
            "model parallelism must be between 1 and 4096, not " + std::to_string(mp));
    }
  }
}
