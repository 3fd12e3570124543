// The block-scaled transforms end to end: rules `transforms:` -> plan -> convert -> verify. Each
// output is compared with the kernel applied once to the whole source tensor (the kernels are
// tested exhaustively in tests/transform): what is checked here is the engine's part, pairing each
// weight with its scale, slicing both on the block grid, band by band and piece by piece, with
// pieces that cut bands and threads.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include <shardwise/convert/converter.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/transform/kernels.hpp>
#include <shardwise/verify/verifier.hpp>

#include "convert/fixture.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRules = R"(shardwise: 1
name: block-test
params:
  dtype: {choices: [fp4, fp8], default: fp4}
output: {file: "model{rank}-mp{mp}.safetensors"}
unknown_keys: error
skip:
  - {name: scale-inv, match: '_scale_inv$', reason: consumed by the dequantization}
keys:
  - {match: '(?P<key>[^.]+)\.[^.]+$'}
table:
  wo: {split: out}
  wi: {split: in}
  wf: {split: replicate}
  wk: {split: replicate}
  w1: {split: replicate}
transforms:
  - name: wo-bf16
    match: '\.w[oi]\.weight$'
    dequantize: {scale: '{stem}.scale', block: [128, 128], to: BF16, nan: torch-cpu}
  - name: v3-style
    match: '\.w[fk]\.weight$'
    dequantize: {scale: '{name}_scale_inv', lookup: input, block: [64, 48], nan: triton, missing: keep, dtype: [F8_E4M3]}
  - name: fp8
    match: '\.w1\.weight$'
    when: {dtype: fp8}
    requantize: {scale: '{stem}.scale'}
  - name: fp8-scale
    match: '\.w1\.scale$'
    when: {dtype: fp8}
    requantize_scale: {weight: '{stem}.weight'}
)";

// Bytes that visit every code, NaN and zero codes included, in no regular order.
std::string codes(std::size_t count, std::uint32_t seed) { return pattern_bytes(count, seed); }

// E8M0 scales from the whole range, with the special codes 0x00 and 0xFF and small codes.
std::string e8m0_scales(std::size_t count, std::uint32_t seed) {
  std::string bytes = pattern_bytes(count, seed);
  const unsigned char specials[] = {0x00, 0xFF, 0x01, 0x05, 0x06, 0x7F, 0xFE};
  for (std::size_t i = 0; i < count; i += 3)
    bytes[i] = static_cast<char>(specials[(i / 3) % std::size(specials)]);
  return bytes;
}

std::string f32_scales(const std::vector<float>& values) {
  std::string bytes(values.size() * 4, '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::string dequantized(const RawTensor& weight, const RawTensor& scale, std::uint64_t block_rows,
                        std::uint64_t block_cols, transform::Bf16Nan nan) {
  std::string out(weight.bytes.size() * 2, '\0');
  const st::DType dtype = scale.dtype == "F32" ? st::DType::F32 : st::DType::F8_E8M0;
  transform::dequantize_to_bf16({as_bytes(weight.bytes), as_bytes(scale.bytes), dtype, weight.shape[0],
                                 weight.shape[1], scale.shape[1], block_rows, block_cols},
                                nan, {reinterpret_cast<std::byte*>(out.data()), out.size()});
  return out;
}

struct Fixture {
  TempDir dir;
  fs::path in = dir / "in";
  std::vector<RawTensor> first = {
      // 3 block-rows of 128 split over mp=3; 160 columns: a partial block across.
      {"a.wo.scale", "F8_E8M0", {3, 2}, e8m0_scales(6, 1)},
      {"a.wo.weight", "F8_E4M3", {384, 160}, codes(384 * 160, 2)},
      // split on `in`: 3 x 128 columns, 130 rows (a partial block-row).
      {"a.wi.scale", "F8_E8M0", {2, 3}, e8m0_scales(6, 3)},
      {"a.wi.weight", "F8_E4M3", {130, 384}, codes(130 * 384, 4)},
      {"e.w1.scale", "F8_E8M0", {256, 8}, e8m0_scales(256 * 8, 5)},
      {"e.w1.weight", "I8", {256, 128}, codes(256 * 128, 6)},
  };
  std::vector<RawTensor> second = {
      // Found by input name in another file; F32 scale, partial blocks both ways.
      {"a.wf.weight", "F8_E4M3", {100, 70}, codes(100 * 70, 7)},
      {"a.wf.weight_scale_inv",
       "F32",
       {2, 2},
       f32_scales(
           {0.5f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), 3e-39f})},
      // No scale: kept as it is, with a note.
      {"a.wk.weight", "F8_E4M3", {4, 4}, codes(16, 8)},
  };
  Fixture() {
    fs::create_directories(in);
    write_file(in / "model-1.safetensors", build_safetensors(first));
    write_file(in / "model-2.safetensors", build_safetensors(second));
  }
  plan::Plan plan(const rules::Rules& rules, std::uint64_t mp, rules::Params params = {}) const {
    return plan::plan_checkpoint(st::Checkpoint::open(in.string()), rules, {mp, std::move(params)});
  }
};

std::string rows_of(const std::string& bytes, std::uint64_t row_bytes, std::uint64_t begin,
                    std::uint64_t end) {
  return bytes.substr(begin * row_bytes, (end - begin) * row_bytes);
}

TEST_CASE("dequantize pairs: E4M3 x block scale -> BF16, the scale consumed, sliced on the block grid") {
  Fixture f;
  const rules::Rules rules = rules::Rules::load_text(kRules, "block.yaml");
  const plan::Plan plan = f.plan(rules, 3);
  REQUIRE(plan.notes.size() == 1);
  CHECK_THAT(plan.notes[0],
             Catch::Contains("a.wk.weight: no block scale a.wk.weight_scale_inv (not in the checkpoint): "
                             "written unchanged as F8_E4M3"));
  const std::string wo = dequantized(f.first[1], f.first[0], 128, 128, transform::Bf16Nan::torch_cpu);
  const std::string wi = dequantized(f.first[3], f.first[2], 128, 128, transform::Bf16Nan::torch_cpu);
  const std::string wf = dequantized(f.second[0], f.second[1], 64, 48, transform::Bf16Nan::triton);

  for (const std::size_t piece : {std::size_t{0}, std::size_t{4096}, std::size_t{1000}}) {
    for (const unsigned threads : {1u, 3u}) {
      INFO("piece bytes " << piece << ", threads " << threads);
      const fs::path out = f.dir / fmt::format("out-{}-{}", piece, threads);
      convert::ConvertOptions options;
      options.run.output_dir = out.string();
      options.run.progress = output::ProgressMode::quiet;
      options.run.threads = threads;
      options.piece_bytes = piece;
      options.rules = {rules.name(), output::xxh3(rules.text())};
      convert::convert_plan(plan, options);
      for (std::uint64_t rank = 0; rank < 3; ++rank) {
        INFO("rank " << rank);
        const auto files = parse_safetensors(read_file(out / fmt::format("model{}-mp3.safetensors", rank)));
        CHECK(files.size() == 6);  // the scales are consumed (wo, wi) or skipped (wf)
        CHECK(files.count("a.wo.scale") == 0);
        CHECK(files.at("a.wo.weight").dtype == "BF16");
        CHECK(files.at("a.wo.weight").shape == std::vector<std::uint64_t>{128, 160});
        CHECK(files.at("a.wo.weight").bytes == rows_of(wo, 320, 128 * rank, 128 * (rank + 1)));
        CHECK(files.at("a.wi.weight").shape == std::vector<std::uint64_t>{130, 128});
        CHECK(files.at("a.wi.weight").bytes ==
              slice_bytes(wi, {130, 384}, 2, 1, 128 * rank, 128 * (rank + 1)));
        CHECK(files.at("a.wf.weight").bytes == wf);
        CHECK(files.at("a.wk.weight").dtype == "F8_E4M3");
        CHECK(files.at("a.wk.weight").bytes == f.second[2].bytes);
        CHECK(files.at("e.w1.weight").dtype == "I8");  // fp4: no transform
      }
      verify::VerifyOptions check;
      check.output_dir = options.run.output_dir;
      check.progress = output::ProgressMode::quiet;
      CHECK(verify::verify_plan(plan, rules, check).ok());
    }
  }

  // A dequantized byte changed on disk is caught by verify, which recomputes the transform.
  const fs::path out = f.dir / "out-0-1";
  std::string rank1 = read_file(out / "model1-mp3.safetensors");
  rank1[rank1.size() / 2] = static_cast<char>(rank1[rank1.size() / 2] ^ 1);
  write_file(out / "model1-mp3.safetensors", rank1);
  verify::VerifyOptions check;
  check.output_dir = out.string();
  check.progress = output::ProgressMode::quiet;
  CHECK(!verify::verify_plan(plan, rules, check).ok());
}

TEST_CASE("requantize pairs: FP4 + per-32 scale -> E4M3 + per-128x128 scale, chosen by a choice parameter") {
  Fixture f;
  const rules::Rules rules = rules::Rules::load_text(kRules, "block.yaml");
  const plan::Plan plan = f.plan(rules, 1, {{"dtype", 1}});
  std::string weight(256 * 256, '\0');
  std::string scale(2 * 2, '\0');
  transform::requantize_fp4_to_fp8(as_bytes(f.first[5].bytes), as_bytes(f.first[4].bytes), 256, 256,
                                   {reinterpret_cast<std::byte*>(weight.data()), weight.size()},
                                   {reinterpret_cast<std::byte*>(scale.data()), scale.size()});
  for (const std::size_t piece : {std::size_t{0}, std::size_t{5000}}) {
    const fs::path out = f.dir / fmt::format("fp8-{}", piece);
    convert::ConvertOptions options;
    options.run.output_dir = out.string();
    options.run.progress = output::ProgressMode::quiet;
    options.piece_bytes = piece;
    options.rules = {rules.name(), output::xxh3(rules.text())};
    convert::convert_plan(plan, options);
    const auto files = parse_safetensors(read_file(out / "model0-mp1.safetensors"));
    CHECK(files.at("e.w1.weight").dtype == "F8_E4M3");
    CHECK(files.at("e.w1.weight").shape == std::vector<std::uint64_t>{256, 256});
    CHECK(files.at("e.w1.weight").bytes == weight);
    CHECK(files.at("e.w1.scale").dtype == "F8_E8M0");
    CHECK(files.at("e.w1.scale").shape == std::vector<std::uint64_t>{2, 2});
    CHECK(files.at("e.w1.scale").bytes == scale);
    verify::VerifyOptions check;
    check.output_dir = options.run.output_dir;
    check.progress = output::ProgressMode::quiet;
    CHECK(verify::verify_plan(plan, rules, check).ok());
  }
}

TEST_CASE(
    "block pairs: splits off the block grid and misfit companions are planning errors naming the numbers") {
  Fixture f;
  const rules::Rules rules = rules::Rules::load_text(kRules, "block.yaml");
  SECTION("a split that cuts a block") {
    // mp=2: a.wo's 384 rows give 192 per rank, not whole 128-row blocks (its 3-row scale cannot
    // split either); a.wi's 384 columns, 192 per rank.
    try {
      f.plan(rules, 2);
      FAIL("planned a split that cuts a block");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      const std::string what = e.what();
      CHECK_THAT(what, Catch::Contains("a.wo.scale: 3 rows cannot be split over mp=2"));
      CHECK_THAT(what, Catch::Contains("a.wi.weight on rank 0 (transform[wo-bf16] at block.yaml:"));
      CHECK_THAT(what, Catch::Contains(
                           "columns 0-192 of 384 (mp=2) are not a whole number of 128-column blocks of its "
                           "block scale a.wi.scale"));
    }
  }
  SECTION("a companion of the wrong shape or dtype, a missing one") {
    f.first[0] = {"a.wo.scale", "F8_E8M0", {3, 1}, e8m0_scales(3, 1)};
    f.first[2] = {"a.wi.scale", "BF16", {2, 3}, codes(12, 3)};
    f.first.erase(f.first.begin() + 4);  // e.w1.scale
    write_file(f.in / "model-1.safetensors", build_safetensors(f.first));
    try {
      f.plan(rules, 1, {{"dtype", 1}});
      FAIL("planned misfit companions");
    } catch (const Error& e) {
      const std::string what = e.what();
      CHECK_THAT(what, Catch::Contains("a.wo.weight on rank 0 (transform[wo-bf16] at block.yaml:"));
      CHECK_THAT(what, Catch::Contains(
                           "its companion a.wo.scale is F8_E8M0[3, 1], expected F8_E8M0 or F32[3, 2] for "
                           "F8_E4M3[384, 160]"));
      CHECK_THAT(what,
                 Catch::Contains("its companion a.wi.scale is BF16[2, 3], expected F8_E8M0 or F32[2, 3]"));
      CHECK_THAT(what, Catch::Contains("e.w1.weight on rank 0 (transform[fp8] at block.yaml:"));
      CHECK_THAT(what, Catch::Contains("needs its companion e.w1.scale, which is not placed on rank 0"));
    }
  }
}

}  // namespace
}  // namespace shardwise::test
