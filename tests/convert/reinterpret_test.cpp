// The reinterpretation transform end to end: rules `transforms:` -> plan -> convert -> verify. A
// reinterpreted tensor is the source's bytes (sliced as planned) under another dtype, its last
// dim scaled by the ratio of the element widths; expectations are sliced element by element here.
#include <catch2/catch.hpp>

#include <filesystem>

#include <shardwise/convert/converter.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/verify/verifier.hpp>

#include "convert/fixture.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

// I8 tensors written as F4 (rules `transforms:`), loaded under the name its messages are checked with.
rules::Rules load_rules() {
  return rules::Rules::load_text(read_file(source_dir() + "/tests/data/rules/fp4-reinterpret.yaml"),
                                 "fp4.yaml");
}

struct Fixture {
  TempDir dir;
  fs::path in = dir / "in";
  std::vector<RawTensor> tensors = {
      {"layers.0.w1.weight", "I8", {4, 3}, pattern_bytes(12, 1)},            // split out
      {"layers.0.w2.weight", "I8", {2, 6}, pattern_bytes(12, 2)},            // split in
      {"layers.0.experts.3.w1.weight", "I8", {2, 5}, pattern_bytes(10, 3)},  // owned by rank 1
      {"layers.0.norm.weight", "BF16", {4}, pattern_bytes(8, 4)},            // untouched
  };
  Fixture() {
    fs::create_directories(in);
    write_file(in / "model.safetensors", build_safetensors(tensors));
  }
  plan::Plan plan(const rules::Rules& rules) const {
    return plan::plan_checkpoint(st::Checkpoint::open(in.string()), rules, {2, {}});
  }
};

TEST_CASE("reinterpret: I8 [o, i/2] is written as F4 [o, i], bytes unchanged, after the split") {
  Fixture f;
  const rules::Rules rules = load_rules();
  const plan::Plan plan = f.plan(rules);
  convert::ConvertOptions options;
  options.run.output_dir = (f.dir / "out").string();
  options.run.progress = output::ProgressMode::quiet;
  options.rules = {rules.name(), output::xxh3(rules.text()), rules.output_file_pattern(),
                   rules.text()};  // as the CLI records them
  convert::convert_plan(plan, options);

  struct Expected {
    std::uint64_t rank;
    const char* name;
    std::size_t source;
    int dim;  // -1: whole
    std::vector<std::uint64_t> shape;
    const char* dtype;
  };
  const Expected expected[] = {
      {0, "layers.0.w1.weight", 0, 0, {2, 6}, "F4"},
      {1, "layers.0.w1.weight", 0, 0, {2, 6}, "F4"},
      {0, "layers.0.w2.weight", 1, 1, {2, 6}, "F4"},
      {1, "layers.0.w2.weight", 1, 1, {2, 6}, "F4"},
      {1, "layers.0.experts.3.w1.weight", 2, -1, {2, 10}, "F4"},
      {0, "layers.0.norm.weight", 3, -1, {4}, "BF16"},
      {1, "layers.0.norm.weight", 3, -1, {4}, "BF16"},
  };
  std::map<std::string, ParsedTensor> files[2] = {
      parse_safetensors(read_file(f.dir / "out" / "model0-mp2.safetensors")),
      parse_safetensors(read_file(f.dir / "out" / "model1-mp2.safetensors"))};
  CHECK(files[0].size() == 3);
  CHECK(files[1].size() == 4);
  for (const Expected& e : expected) {
    INFO(e.name << " on rank " << e.rank);
    const RawTensor& src = f.tensors[e.source];
    std::string bytes = src.bytes;
    if (e.dim >= 0) {
      const std::uint64_t half = src.shape[static_cast<std::size_t>(e.dim)] / 2;
      bytes = slice_bytes(src.bytes, src.shape, 1, static_cast<std::size_t>(e.dim), e.rank * half,
                          (e.rank + 1) * half);
    }
    const auto found = files[e.rank].find(e.name);
    REQUIRE(found != files[e.rank].end());
    CHECK(found->second.dtype == e.dtype);
    CHECK(found->second.shape == e.shape);
    CHECK(found->second.bytes == bytes);
  }

  verify::VerifyOptions check;
  check.output_dir = options.run.output_dir;
  check.progress = output::ProgressMode::quiet;
  CHECK(verify::verify_plan(plan, rules, check).ok());

  // A reinterpreted tensor whose bytes changed on disk is caught.
  std::string rank0 = read_file(f.dir / "out" / "model0-mp2.safetensors");
  rank0.back() = static_cast<char>(rank0.back() ^ 1);
  write_file(f.dir / "out" / "model0-mp2.safetensors", rank0);
  CHECK(!verify::verify_plan(plan, rules, check).ok());
}

TEST_CASE("reinterpret: a source of another dtype is a planning error naming the tensor and the rule") {
  Fixture f;
  f.tensors[0].dtype = "U8";
  f.tensors[2] = {"layers.0.experts.3.w1.weight", "F4", {2, 10}, pattern_bytes(10, 3)};
  write_file(f.in / "model.safetensors", build_safetensors(f.tensors));
  const rules::Rules rules = load_rules();
  try {
    f.plan(rules);
    FAIL("planned a U8 tensor through an I8 reinterpretation");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("(2 problems)"));
    CHECK_THAT(what, Catch::Contains(
                         "layers.0.w1.weight: transform[fp4] reinterprets I8 as F4, but the tensor is U8 "
                         "(fp4.yaml:16:5)"));
    CHECK_THAT(what,
               Catch::Contains("layers.0.experts.3.w1.weight: transform[fp4] reinterprets I8 as F4, but the "
                               "tensor is F4 (fp4.yaml:16:5)"));
  }
}

}  // namespace
}  // namespace shardwise::test
