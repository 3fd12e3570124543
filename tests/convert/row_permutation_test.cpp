// The RoPE row permutation end to end: rules `transforms:` permute_rope -> plan -> convert ->
// verify. Expectations are built here the way transformers' convert_llama_weights_to_hf writes
// them (a view of [heads, hd/2, 2, cols], dims 1 and 2 swapped: whole rows appended in that order),
// then cut for the rank as the planner's split says (permute, then cut).
#include <catch2/catch.hpp>

#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <shardwise/convert/converter.hpp>
#include <shardwise/convert/tensor_stream.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/transform/row_permutation.hpp>
#include <shardwise/verify/verifier.hpp>

#include "convert/fixture.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

// transformers' `permute(w, heads)`: w.view(heads, rows/heads/2, 2, cols).transpose(1, 2).
std::string meta_to_hf(const std::string& bytes, std::uint64_t rows, std::uint64_t heads) {
  const std::size_t row = bytes.size() / rows;
  const std::uint64_t half = rows / heads / 2;
  std::string out;
  for (std::uint64_t h = 0; h < heads; ++h)
    for (std::uint64_t j = 0; j < 2; ++j)
      for (std::uint64_t i = 0; i < half; ++i) out += bytes.substr(((h * half + i) * 2 + j) * row, row);
  return out;
}

// Its inverse (STRUCTURE_OPS.md 3.3): w.view(heads, 2, rows/heads/2, cols).transpose(1, 2).
std::string hf_to_meta(const std::string& bytes, std::uint64_t rows, std::uint64_t heads) {
  const std::size_t row = bytes.size() / rows;
  const std::uint64_t half = rows / heads / 2;
  std::string out;
  for (std::uint64_t h = 0; h < heads; ++h)
    for (std::uint64_t i = 0; i < half; ++i)
      for (std::uint64_t j = 0; j < 2; ++j) out += bytes.substr(((h * 2 + j) * half + i) * row, row);
  return out;
}

TEST_CASE("rope_source_row: the examples of STRUCTURE_OPS.md and a round trip") {
  using transform::RopeOrder;
  const std::uint64_t to_hf[] = {0, 2, 4, 6, 1, 3, 5, 7};
  const std::uint64_t to_meta[] = {0, 4, 1, 5, 2, 6, 3, 7};
  for (std::uint64_t r = 0; r < 8; ++r) {
    CHECK(transform::rope_source_row(RopeOrder::half_split, 16, 2, r) == to_hf[r]);
    CHECK(transform::rope_source_row(RopeOrder::half_split, 16, 2, 8 + r) == 8 + to_hf[r]);
    CHECK(transform::rope_source_row(RopeOrder::interleaved, 8, 1, r) == to_meta[r]);
  }
  for (const auto& [rows, heads] :
       {std::pair<std::uint64_t, std::uint64_t>{2, 1}, {12, 3}, {64, 4}, {96, 1}}) {
    for (std::uint64_t r = 0; r < rows; ++r) {
      const std::uint64_t meta = transform::rope_source_row(RopeOrder::half_split, rows, heads, r);
      CHECK(transform::rope_source_row(RopeOrder::interleaved, rows, heads, meta) == r);
    }
  }
}

rules::Rules load_rules() {
  return rules::Rules::load_text(read_file(source_dir() + "/tests/data/rules/rope-permute.yaml"),
                                 "rope.yaml");
}

struct Fixture {
  TempDir dir;
  fs::path in = dir / "in";
  // 4 query heads of 8 rows, 2 kv heads of 8 rows, hidden 6 (BF16: 12 bytes a row).
  std::vector<RawTensor> tensors = {
      {"layers.0.wq.weight", "BF16", {32, 6}, pattern_bytes(32 * 12, 1)},  // split out
      {"layers.0.wq.bias", "BF16", {32}, pattern_bytes(64, 2)},            // split out, 1-D
      {"layers.0.wk.weight", "BF16", {16, 6}, pattern_bytes(16 * 12, 3)},  // split out, kv heads
      {"layers.0.wv.weight", "F32", {8, 4}, pattern_bytes(8 * 16, 4)},     // split in, the other way
      {"layers.0.items.1.wx.weight", "I8", {4, 3}, pattern_bytes(12, 5)},  // owned, the other way
      {"layers.0.wo.weight", "BF16", {6, 32}, pattern_bytes(6 * 64, 6)},   // untouched
  };
  Fixture() {
    fs::create_directories(in);
    write_file(in / "model.safetensors", build_safetensors(tensors));
  }
  plan::Plan plan(const rules::Rules& rules, std::uint64_t mp) const {
    return plan::plan_checkpoint(st::Checkpoint::open(in.string()), rules,
                                 {mp, {{"n_heads", 4}, {"n_kv_heads", 2}}});
  }
};

TEST_CASE("permute_rope: q, its bias and k in half-split rows, then cut for each rank, verify recomputes") {
  Fixture f;
  const rules::Rules rules = load_rules();
  for (const std::uint64_t mp : {1, 2, 4}) {
    CAPTURE(mp);
    const plan::Plan plan = f.plan(rules, mp);
    convert::ConvertOptions options;
    options.run.output_dir = (f.dir / fmt::format("out{}", mp)).string();
    options.run.progress = output::ProgressMode::quiet;
    options.rules = {rules.name(), output::xxh3(rules.text()), rules.output_file_pattern(), rules.text()};
    convert::convert_plan(plan, options);

    const auto& t = f.tensors;
    // The whole output tensors, each cut below as its split says.
    const std::string q = meta_to_hf(t[0].bytes, 32, 4);
    const std::string bias = meta_to_hf(t[1].bytes, 32, 4);
    const std::string k = meta_to_hf(t[2].bytes, 16, 2);
    const std::string v = hf_to_meta(t[3].bytes, 8, 2);
    const std::string x = hf_to_meta(t[4].bytes, 4, 2);
    for (std::uint64_t rank = 0; rank < mp; ++rank) {
      CAPTURE(rank);
      const auto file = parse_safetensors(
          read_file(fs::path(options.run.output_dir) / fmt::format("model{}-mp{}.safetensors", rank, mp)));
      // Split out: rank r's block of the permuted rows.
      const auto rows = [&](const std::string& whole) {
        return whole.substr(whole.size() / mp * rank, whole.size() / mp);
      };
      CHECK(file.at("layers.0.wq.weight").bytes == rows(q));
      CHECK(file.at("layers.0.wq.bias").bytes == rows(bias));
      CHECK(file.at("layers.0.wk.weight").bytes == rows(k));
      CHECK(file.at("layers.0.wv.weight").bytes ==
            slice_bytes(v, {8, 4}, 4, 1, rank * 4 / mp, (rank + 1) * 4 / mp));
      CHECK(file.at("layers.0.wo.weight").bytes == t[5].bytes);
      CHECK(file.at("layers.0.wv.weight").shape == std::vector<std::uint64_t>{8, 4 / mp});
      // Index 1 of 4 items: rank 1 / (4 / mp).
      if (rank == 1 / (4 / mp)) {
        CHECK(file.at("layers.0.items.1.wx.weight").bytes == x);
      } else {
        CHECK(file.count("layers.0.items.1.wx.weight") == 0);
      }
    }
    verify::VerifyOptions check;
    check.output_dir = options.run.output_dir;
    check.progress = output::ProgressMode::quiet;
    CHECK(verify::verify_plan(plan, rules, check).ok());
  }
}

TEST_CASE("permute_rope: the stream gives the same bytes whatever the read sizes and scratch") {
  Fixture f;
  const rules::Rules rules = load_rules();
  const plan::Plan plan = f.plan(rules, 2);
  const std::string q = meta_to_hf(f.tensors[0].bytes, 32, 4);
  const std::string v = hf_to_meta(f.tensors[3].bytes, 8, 2);
  for (const plan::OutputFile& out : plan.outputs) {
    for (const plan::PlannedTensor& t : out.tensors) {
      if (t.name != "layers.0.wq.weight" && t.name != "layers.0.wv.weight") continue;
      CAPTURE(t.name, out.rank);
      const std::string expected = t.name == "layers.0.wq.weight"
                                       ? q.substr(q.size() / 2 * out.rank, q.size() / 2)
                                       : slice_bytes(v, {8, 4}, 4, 1, out.rank * 2, out.rank * 2 + 2);
      const convert::TensorStream stream(plan, t);
      REQUIRE(stream.bytes() == expected.size());
      const int fd = ::open(plan.input_files[0].c_str(), O_RDONLY);
      REQUIRE(fd >= 0);
      // A head of q is 96 bytes: a scratch of 4096 holds it; reads of 5 bytes cut rows.
      for (const std::size_t step : {std::size_t{5}, std::size_t{12}, std::size_t{100}, expected.size()}) {
        std::vector<std::byte> scratch(convert::kMinScratchBytes);
        std::string got(expected.size(), '\0');
        for (std::size_t at = 0; at < expected.size(); at += step) {
          const std::size_t n = std::min(step, expected.size() - at);
          stream.read(fd, plan.input_files[0], at, std::as_writable_bytes(std::span(got)).subspan(at, n),
                      scratch);
        }
        CHECK(got == expected);
      }
      ::close(fd);
    }
  }
}

TEST_CASE("permute_rope: rows that do not make whole heads of equal halves are refused, named") {
  Fixture f;
  f.tensors[2].shape = {12, 8};  // 12 rows in 2 kv heads: heads of 6 rows, fine; 3 heads below
  write_file(f.in / "model.safetensors", build_safetensors(f.tensors));
  const rules::Rules rules = load_rules();
  try {
    plan::plan_checkpoint(st::Checkpoint::open(f.in.string()), rules,
                          {1, {{"n_heads", 4}, {"n_kv_heads", 8}}});
    FAIL("planned 12 rows in 8 heads");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    CHECK_THAT(e.what(), Catch::Contains("layers.0.wk.weight: transform[k-rope]") &&
                             Catch::Contains(
                                 "cannot permute 12 rows in n_kv_heads=8 heads: 12 is not a multiple of 8"));
  }
  try {
    plan::plan_checkpoint(st::Checkpoint::open(f.in.string()), rules,
                          {1, {{"n_heads", 4}, {"n_kv_heads", 4}}});
    FAIL("planned heads of 3 rows");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("a head of 3 rows has no halves of equal size"));
  }
}

TEST_CASE("permute_rope: rules problems are reported at their line") {
  const auto problems = [](const std::string& transform) {
    const std::string yaml =
        "shardwise: 1\nname: t\nparams:\n  n: {default: 4}\n  e: {default: infer}\n"
        "output: {file: 'm{rank}.safetensors'}\nunknown_keys: replicate\n"
        "keys: [{match: '(?P<key>x)'}]\ntransforms:\n  - {match: 'x', permute_rope: " +
        transform + "}\n";
    try {
      rules::Rules::load_text(yaml, "p.yaml");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::rules);
      return std::string(e.what());
    }
    return std::string("loaded");
  };
  CHECK(problems("{heads: n, from: interleaved, to: half_split}") == "loaded");
  CHECK(problems("{heads: 8, from: half_split, to: interleaved}") == "loaded");
  CHECK_THAT(
      problems("{heads: nn, from: interleaved, to: half_split}"),
      Catch::Contains("p.yaml:10:") && Catch::Contains("undefined parameter 'nn' (did you mean 'n'?)"));
  CHECK_THAT(problems("{heads: e, from: interleaved, to: half_split}"),
             Catch::Contains("says 'default: infer'"));
  CHECK_THAT(problems("{heads: 0, from: interleaved, to: half_split}"), Catch::Contains("must be positive"));
  CHECK_THAT(problems("{heads: n, from: interleaved, to: interleaved}"),
             Catch::Contains("nothing to permute"));
  CHECK_THAT(problems("{heads: n, from: interleave, to: half_split}"),
             Catch::Contains("(did you mean 'interleaved'?)"));
  CHECK_THAT(problems("{from: interleaved, to: half_split}"),
             Catch::Contains("missing required key 'heads'"));
}

}  // namespace
}  // namespace shardwise::test
