// Packed layouts with 1-D members (`[in]`, `[out]`) and divisors named by parameters
// (`in/group_size`): how each member is placed under each split, and every refusal with its numbers.

#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;
using plan::Plan;
using plan::PlannedTensor;
using st::DType;

namespace {

// GPTQ with act-order: a per-input-channel group index, a per-output bias, the group size a parameter.
const char* const kActOrderRules = R"(shardwise: 1
name: act-order-test
params:
  group_size: {default: 64, help: input channels per quantisation group}
output:
  file: "rank{rank}.safetensors"
layouts:
  act-order:
    members:
      qweight: {shape: [in/8, out], dtype: [I32]}
      qzeros:  {shape: [in/group_size, out/8], dtype: [I32]}
      scales:  {shape: [in/group_size, out], dtype: [F16]}
      g_idx:   {shape: [in], dtype: [I32]}
      bias:    {shape: [out], dtype: [F16]}
keys:
  - name: module
    match: '(?P<key>[^.]+)\.[^.]+$'
table:
  col: {split: out}
  row: {split: in}
  rep: {split: replicate}
)";

// The five members of a logical [out, in] weight packed with `group` input rows per scale.
std::vector<TensorSpec> act_order(const std::string& base, std::uint64_t out, std::uint64_t in,
                                  std::uint64_t group) {
  return {{base + ".qweight", DType::I32, {in / 8, out}},
          {base + ".qzeros", DType::I32, {in / group, out / 8}},
          {base + ".scales", DType::F16, {in / group, out}},
          {base + ".g_idx", DType::I32, {in}},
          {base + ".bias", DType::F16, {out}}};
}

Plan plan_folder(const TempDir& dir, std::uint64_t mp, rules::Params params = {}) {
  return plan_folder_with(dir.path(), kActOrderRules, "act-order.yaml", mp, std::move(params));
}

// The message of the Error a plan fails with.
std::string plan_error(const TempDir& dir, std::uint64_t mp, rules::Params params = {}) {
  try {
    plan_folder(dir, mp, std::move(params));
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    return e.what();
  }
  FAIL("the plan succeeded");
  return {};
}

}  // namespace

TEST_CASE("1-D members follow their axis: sliced when the group splits it, whole on every rank otherwise") {
  TempDir dir;
  // col: [out=64, in=512] split out; row: [out=32, in=1024] split in.
  write_checkpoint_file(dir / "a.safetensors",
                        act_order("blk.col", 64, 512, 64) + act_order("blk.row", 32, 1024, 64));
  const Plan plan = plan_folder(dir, 4);
  for (std::uint64_t rank = 0; rank < 4; ++rank) {
    INFO("rank " << rank);
    // Split out: [in] is replicated; [out] is cut like out (16 per rank).
    const PlannedTensor& g_col = find(plan, rank, "blk.col.g_idx");
    CHECK(g_col.slice.whole());
    CHECK(g_col.shape == st::Shape{512});
    const PlannedTensor& b_col = find(plan, rank, "blk.col.bias");
    CHECK(b_col.slice.dim == 0);
    CHECK(b_col.slice.begin == rank * 16);
    CHECK(b_col.slice.end == rank * 16 + 16);
    CHECK(b_col.shape == st::Shape{16});
    CHECK(find(plan, rank, "blk.col.scales").shape == st::Shape{8, 16});  // 512 / 64 groups, 64 / 4 outs
    // Split in: [in] is cut like in (256 per rank); [out] is replicated; scales keep whole groups.
    const PlannedTensor& g_row = find(plan, rank, "blk.row.g_idx");
    CHECK(g_row.slice.dim == 0);
    CHECK(g_row.slice.begin == rank * 256);
    CHECK(g_row.slice.end == rank * 256 + 256);
    CHECK(find(plan, rank, "blk.row.bias").slice.whole());
    const PlannedTensor& scales = find(plan, rank, "blk.row.scales");  // 16 groups of 64 inputs
    CHECK(scales.slice.dim == 0);
    CHECK(scales.slice.begin == rank * 4);
    CHECK(scales.shape == st::Shape{4, 32});
    CHECK(find(plan, rank, "blk.row.qweight").shape == st::Shape{32, 32});  // 1024 / 8 / 4 packed rows
  }
}

TEST_CASE("a parameterised divisor takes the value the plan is made with") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", act_order("blk.row", 32, 1024, 128));
  // group_size 128 given: 8 groups, 2 per rank at mp 4.
  const Plan plan = plan_folder(dir, 4, {{"group_size", 128}});
  CHECK(find(plan, 3, "blk.row.scales").slice.begin == 6);
  CHECK(find(plan, 3, "blk.row.scales").shape == st::Shape{2, 32});
  // The default (64) does not fit a checkpoint packed with groups of 128: the members disagree on in.
  const std::string wrong = plan_error(dir, 4);
  INFO(wrong);
  CHECK_THAT(wrong,
             Catch::Contains("blk.row: the members of packed layout act-order disagree on in: qweight "
                             "blk.row.qweight I32[128, 32] gives in=1024; qzeros blk.row.qzeros I32[8, 4] "
                             "gives in=512; scales blk.row.scales F16[8, 32] gives in=512; g_idx "
                             "blk.row.g_idx I32[1024] gives in=1024"));
  CHECK_THAT(wrong,
             Catch::Contains("qzeros fits [in/128, out/8], where the layout says [in/group_size, out/8] "
                             "(group_size=64)"));
}

TEST_CASE("a divisor of 0 is refused once per layout, naming the member and the parameter") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors",
                        act_order("blk.row", 32, 1024, 64) + act_order("blk.col", 32, 1024, 64));
  const std::string error = plan_error(dir, 2, {{"group_size", 0}});
  INFO(error);
  CHECK_THAT(error,
             Catch::Contains("packed layout act-order (act-order.yaml:8:3) cannot be placed: member qzeros "
                             "[in/group_size, out/8]: group_size=0; member scales [in/group_size, out]: "
                             "group_size=0 (a divisor must be at least 1"));
  CHECK(error.find("cannot be placed") == error.rfind("cannot be placed"));  // once, not per group
}

TEST_CASE("a group missing its 1-D member is named with what is missing") {
  TempDir dir;
  std::vector<TensorSpec> tensors = act_order("blk.row", 32, 1024, 64);
  tensors.erase(tensors.begin() + 3);  // g_idx
  write_checkpoint_file(dir / "a.safetensors", tensors);
  const std::string error = plan_error(dir, 2);
  CHECK_THAT(error, Catch::Contains("blk.row: incomplete packed group (act-order): missing g_idx; present: "
                                    "blk.row.qweight (a.safetensors)"));
}

TEST_CASE("splits never cut a parameterised group or a 1-D member, a member of the wrong rank is named") {
  TempDir dir;
  // in = 256: 4 groups of 64, which 8 ranks would cut; g_idx itself divides (32 per rank).
  write_checkpoint_file(dir / "a.safetensors", act_order("blk.row", 32, 256, 64));
  const std::string cut = plan_error(dir, 8);
  INFO(cut);
  CHECK_THAT(cut,
             Catch::Contains("blk.row.scales: 4 packed rows cannot be split over mp=8 (in=256, 32 per rank, "
                             "packing 64)"));
  CHECK_THAT(cut, Catch::Contains("blk.row.qzeros: 4 packed rows cannot be split over mp=8"));
  CHECK(cut.find("blk.row.g_idx:") == std::string::npos);

  TempDir flat;
  std::vector<TensorSpec> tensors = act_order("blk.row", 32, 1024, 64);
  tensors[3].shape = {1024, 1};  // g_idx with two dims
  write_checkpoint_file(flat / "a.safetensors", tensors);
  CHECK_THAT(
      plan_error(flat, 2),
      Catch::Contains("blk.row.g_idx: member g_idx of packed layout act-order must have 1 dim ([in]), has "
                      "[1024, 1]"));
}

TEST_CASE("layout shapes: one or two dims, divisors a number or a declared parameter") {
  const std::string head =
      "shardwise: 1\nname: t\nparams:\n  group_size: {default: 64}\n  n: {default: infer}\n"
      "output: {file: 'r{rank}.safetensors'}\nlayouts:\n  l:\n    members:\n";
  struct Case {
    const char* member;
    const char* message;
  };
  const Case cases[] = {
      {"      a: {shape: [in/group_sise, out]}",
       "t.yaml:10:19: shape of member 'a' of layout 'l' names an undefined parameter 'group_sise' (did you "
       "mean "
       "'group_size'?)"},
      {"      a: {shape: [in/n, out]}",
       "t.yaml:10:19: shape of member 'a' of layout 'l' divides by parameter 'n', which says 'default: "
       "infer'"},
      {"      a: {shape: [in, out, out]}",
       "t.yaml:10:18: shape of member 'a' of layout 'l' must have one dim or two (each out, in, out/N or "
       "in/N), got 3"},
      {"      a: {shape: [in, in/8]}",
       "t.yaml:10:18: shape of member 'a' of layout 'l' must have one 'out' dim and one "
       "'in' dim"},
      {"      a: {shape: [in/0]}", "t.yaml:10:19: bad shape expression 'in/0'"},
  };
  for (const Case& c : cases) {
    INFO(c.member);
    try {
      rules::Rules::load_text(head + c.member + "\n", "t.yaml");
      FAIL("loaded");
    } catch (const Error& e) {
      CHECK_THAT(std::string(e.what()), Catch::Contains(c.message));
    }
  }
  const rules::Rules ok = rules::Rules::load_text(
      head + "      a: {shape: [in/group_size, out/8]}\n      b: {shape: [in]}\n", "t.yaml");
  const rules::LayoutMember& a = *ok.layouts().at(0).find("a");
  REQUIRE(a.dims.size() == 2);
  CHECK(a.dims[0].divisor_param == "group_size");
  CHECK(a.dims[1].divisor == 8);
  CHECK(ok.layouts().at(0).find("b")->dims.size() == 1);
}
