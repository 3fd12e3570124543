// The kernels' AVX2 code against their portable code, byte for byte, on the same inputs: all 256
// E4M3 codes x all 256 E8M0 codes and x 65,536 F32 scales (every exponent and sign, random
// mantissas, the special values), rows whose length leaves tails of every size, and FP4 blocks
// under every (largest, scale) code pair; dequantize_fp8 likewise with every scale of each dtype
// (all BF16 and F16 patterns, all E8M0 codes), and dequantize_int with every BF16 and F16 scale. The portable
// code itself is checked against independent expectations by dequantize_test and requantize_test, which run
// best_isa().

#include <shardwise/transform/kernels.hpp>

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include <shardwise/transform/dequantize_int.hpp>
#include <shardwise/transform/fp8_scales.hpp>
#include <shardwise/transform/isa.hpp>
#include "transform/fp4_patterns.hpp"

using namespace shardwise;
using namespace shardwise::transform;

namespace {

// Tensor and scale-block shapes whose last block row and column are partial in every way (and one
// tensor of one element per block), for the block-grid comparisons.
struct GridShape {
  std::uint64_t rows, cols, block_rows, block_cols;
};
constexpr std::array<GridShape, 6> kTailGrids{{{300, 257, 128, 128},
                                               {64, 77, 8, 16},
                                               {33, 47, 1, 47},
                                               {5, 7, 1, 1},
                                               {130, 1000, 128, 128},
                                               {16, 31, 16, 31}}};

std::vector<std::byte> dequantized(const BlockScaledBand& band, Bf16Nan nan, Isa isa) {
  std::vector<std::byte> out(2 * band.rows * band.cols);
  dequantize_to_bf16(band, nan, out, isa);
  return out;
}

std::size_t first_difference(const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return i;
  }
  return a.size();
}

// Every code in every row, `rows` rows of 256.
std::vector<std::byte> all_codes(std::size_t rows) {
  std::vector<std::byte> weight(rows * 256);
  for (std::size_t i = 0; i < weight.size(); ++i) weight[i] = std::byte(i & 0xFF);
  return weight;
}

// False, with a warning in the test's output, on a CPU without AVX2: there is nothing to compare
// the portable code with (Catch2 2 cannot mark a test skipped).
bool avx2_to_compare() {
  if (isa_available(Isa::avx2)) return true;
  WARN("this CPU has no AVX2: the AVX2 kernels are not compared");
  return false;
}

}  // namespace

TEST_CASE("best_isa is available, and on x86-64 with AVX2 it is AVX2") {
  CHECK(isa_available(Isa::portable));
  CHECK(isa_available(best_isa()));
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) CHECK(best_isa() == Isa::avx2);
#endif
}

TEST_CASE("dequantize_to_bf16, AVX2 = portable: all 256 E4M3 codes x all 256 E8M0 codes, each NaN policy") {
  if (!avx2_to_compare()) return;
  std::vector<std::byte> scale(256);
  for (std::size_t r = 0; r < 256; ++r) scale[r] = std::byte(r);
  const std::vector<std::byte> weight = all_codes(256);
  for (Bf16Nan nan : {Bf16Nan::torch_cpu, Bf16Nan::canonical, Bf16Nan::triton}) {
    const BlockScaledBand band{weight, scale, st::DType::F8_E8M0, 256, 256, 1, 1, 256};
    const auto portable = dequantized(band, nan, Isa::portable), fast = dequantized(band, nan, Isa::avx2);
    CHECK(first_difference(portable, fast) == portable.size());
  }
}

TEST_CASE("dequantize_to_bf16, AVX2 = portable: all 256 E4M3 codes x 65,536 F32 scales") {
  if (!avx2_to_compare()) return;
  // Scale i: sign and exponent from i's low 9 bits (all 512), mantissa random, plus specials.
  std::mt19937 random(11);
  std::vector<float> values(65536);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint32_t mantissa = i < 1024 ? (i < 512 ? 0u : 0x7FFFFFu) : random() & 0x7FFFFFu;
    values[i] = std::bit_cast<float>(static_cast<std::uint32_t>(i & 0x1FF) << 23 | mantissa);
  }
  const float specials[] = {NAN,
                            -NAN,
                            INFINITY,
                            -INFINITY,
                            0.0f,
                            -0.0f,
                            std::bit_cast<float>(1u),
                            std::bit_cast<float>(0x7F800001u),
                            std::bit_cast<float>(0x80000001u),
                            1.0f / 3.0f};
  for (std::size_t i = 0; i < std::size(specials); ++i) values[1024 + i] = specials[i];
  std::vector<std::byte> scale(4 * values.size());
  std::memcpy(scale.data(), values.data(), scale.size());
  const std::vector<std::byte> weight = all_codes(values.size());
  for (Bf16Nan nan : {Bf16Nan::torch_cpu, Bf16Nan::triton}) {
    const BlockScaledBand band{weight, scale, st::DType::F32, values.size(), 256, 1, 1, 256};
    const auto portable = dequantized(band, nan, Isa::portable), fast = dequantized(band, nan, Isa::avx2);
    const std::size_t at = first_difference(portable, fast);
    INFO("first difference at element " << at / 2 << " (scale " << at / 512 << ", code " << at / 2 % 256
                                        << ")");
    CHECK(at == portable.size());
  }
}

TEST_CASE("dequantize_to_bf16, AVX2 = portable: block widths and tensor widths that leave every tail") {
  if (!avx2_to_compare()) return;
  std::mt19937 random(7);
  for (const GridShape s : kTailGrids) {
    for (st::DType dtype : {st::DType::F8_E8M0, st::DType::F32}) {
      const std::uint64_t scale_rows = (s.rows + s.block_rows - 1) / s.block_rows;
      const std::uint64_t scale_cols = (s.cols + s.block_cols - 1) / s.block_cols + 1;  // one padding column
      std::vector<std::byte> weight(s.rows * s.cols),
          scale(scale_rows * scale_cols * (dtype == st::DType::F32 ? 4 : 1));
      for (auto& b : weight) b = std::byte(random() & 0xFF);
      for (auto& b : scale) b = std::byte(dtype == st::DType::F32 ? random() & 0xFF : 100 + random() % 40);
      const BlockScaledBand band{weight, scale,      dtype,        s.rows,
                                 s.cols, scale_cols, s.block_rows, s.block_cols};
      const auto portable = dequantized(band, Bf16Nan::torch_cpu, Isa::portable);
      const auto fast = dequantized(band, Bf16Nan::torch_cpu, Isa::avx2);
      INFO(s.rows << " x " << s.cols << " in blocks of " << s.block_rows << " x " << s.block_cols);
      CHECK(first_difference(portable, fast) == portable.size());
    }
  }
}

namespace {

std::vector<std::byte> fp8_dequantized(const Fp8Band& band, const OutputFormat& format, Isa isa) {
  std::vector<std::byte> out(2 * band.rows * band.cols);
  dequantize_fp8(band, format, out, isa);
  return out;
}

// Scales of `dtype` as bytes: every BF16 and F16 bit pattern, every E8M0 code, or 16,384 F32 scales
// (all 512 signs and exponents, random mantissas, the special values).
std::vector<std::byte> every_scale(st::DType dtype) {
  std::vector<std::byte> bytes;
  if (dtype == st::DType::F8_E8M0) {
    for (unsigned code = 0; code < 256; ++code) bytes.push_back(std::byte(code));
    return bytes;
  }
  if (dtype != st::DType::F32) {
    bytes.resize(2 * 65536);
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
      const auto half = static_cast<std::uint16_t>(bits);
      std::memcpy(bytes.data() + 2 * bits, &half, 2);
    }
    return bytes;
  }
  std::mt19937 random(13);
  std::vector<std::uint32_t> values(16384);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint32_t mantissa = i < 1024 ? (i < 512 ? 0u : 0x7FFFFFu) : random() & 0x7FFFFFu;
    values[i] = static_cast<std::uint32_t>(i & 0x1FF) << 23 | mantissa;
  }
  const std::uint32_t specials[] = {0x7FC00000u, 0xFFC00000u, 0x7F800000u, 0xFF800000u, 0u, 0x80000000u, 1u,
                                    0x7F800001u, 0x80000001u, 0x3EAAAAABu, 0x00400000u};
  for (std::size_t i = 0; i < std::size(specials); ++i) values[1024 + i] = specials[i];
  bytes.resize(4 * values.size());
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

}  // namespace

TEST_CASE("dequantize_fp8, AVX2 = portable: all 256 E4M3 codes x every scale of each dtype") {
  if (!avx2_to_compare()) return;
  for (const st::DType dtype : {st::DType::F32, st::DType::BF16, st::DType::F16, st::DType::F8_E8M0}) {
    const std::vector<std::byte> scale = every_scale(dtype);
    const std::uint64_t rows = scale.size() / (st::dtype_bits(dtype) / 8);
    const std::vector<std::byte> weight = all_codes(rows);
    // Each NaN policy and both grids on the small set (E8M0); the rest once (a second here).
    const bool all = dtype == st::DType::F8_E8M0;
    for (Bf16Nan nan : {Bf16Nan::canonical, Bf16Nan::torch_cpu, Bf16Nan::triton}) {
      // One scale per row (blocks of 1 x 256), and the same as per-channel scales.
      for (const ScaleGrid grid : {ScaleGrid::blocks(1, 256), ScaleGrid::per_channel()}) {
        const Fp8Band band{weight, scale, dtype, grid, 0, rows, 256, 1};
        const OutputFormat format{st::DType::BF16, nan};
        const auto portable = fp8_dequantized(band, format, Isa::portable);
        const auto fast = fp8_dequantized(band, format, Isa::avx2);
        const std::size_t at = first_difference(portable, fast);
        INFO("scales " << st::dtype_name(dtype) << ": first difference at element " << at / 2 << " (scale "
                       << at / 512 << ", code " << at / 2 % 256 << ")");
        CHECK(at == portable.size());
        if (!all) break;
      }
      if (!all) break;
    }
  }
}

TEST_CASE("dequantize_fp8, AVX2 = portable: block grids with every tail, bands starting anywhere") {
  if (!avx2_to_compare()) return;
  std::mt19937 random(17);
  std::vector<GridShape> shapes(kTailGrids.begin(), kTailGrids.end());
  shapes.push_back({40, 300, ScaleGrid::kWhole, ScaleGrid::kWhole});  // one scale for the tensor
  for (const GridShape s : shapes) {
    for (const st::DType dtype : {st::DType::F32, st::DType::BF16, st::DType::F16, st::DType::F8_E8M0}) {
      const std::uint64_t esize = st::dtype_bits(dtype) / 8;
      const std::uint64_t scale_rows =
          s.block_rows == ScaleGrid::kWhole ? 1 : (s.rows + s.block_rows - 1) / s.block_rows;
      const std::uint64_t scale_cols =
          (s.block_cols == ScaleGrid::kWhole ? 1 : (s.cols + s.block_cols - 1) / s.block_cols) +
          1;  // padding
      std::vector<std::byte> weight(s.rows * s.cols), scale(scale_rows * scale_cols * esize);
      for (auto& b : weight) b = std::byte(random() & 0xFF);
      for (std::size_t i = 0; i < scale.size(); ++i) {
        // Sign-and-exponent bytes kept in a range that meets every code without overflowing.
        scale[i] = std::byte(dtype == st::DType::F8_E8M0 ? 100 + random() % 40
                             : i % esize == esize - 1    ? 0x30 + random() % 24
                                                         : random() & 0xFF);
      }
      const ScaleGrid grid = ScaleGrid::blocks(s.block_rows, s.block_cols);
      for (const std::uint64_t band_rows : {s.rows, std::uint64_t{7}}) {
        for (std::uint64_t first = 0; first < s.rows; first += band_rows) {
          const std::uint64_t count = std::min(band_rows, s.rows - first);
          const IndexRange needed = fp8_band_scale_rows(grid, first, count);
          const Fp8Band band{std::span<const std::byte>(weight).subspan(first * s.cols, count * s.cols),
                             std::span<const std::byte>(scale).subspan(needed.begin * scale_cols * esize,
                                                                       needed.size() * scale_cols * esize),
                             dtype,
                             grid,
                             first,
                             count,
                             s.cols,
                             scale_cols};
          const OutputFormat format{st::DType::BF16, Bf16Nan::canonical};
          const auto portable = fp8_dequantized(band, format, Isa::portable);
          const auto fast = fp8_dequantized(band, format, Isa::avx2);
          INFO(s.rows << " x " << s.cols << " in blocks of " << s.block_rows << " x " << s.block_cols
                      << ", scales " << st::dtype_name(dtype) << ", rows " << first << "+" << count);
          CHECK(first_difference(portable, fast) == portable.size());
        }
      }
    }
  }
}

TEST_CASE("dequantize_int, AVX2 = portable: each packing and width, every BF16 and F16 scale, random codes") {
  if (!avx2_to_compare()) return;
  // 4096 output rows x 256 input columns in 16 groups of 16: the 65,536 scales are every 16-bit
  // pattern (BF16, F16) or random F32s with the specials; codes and zeros random words. Every
  // width with BF16 scales, 4 bits with each scale dtype, in bands and with act-order.
  std::mt19937 random(19);
  const std::uint64_t out = 4096, in = 256, groups = 16;
  for (const IntPacking packing : {IntPacking::gptq, IntPacking::gptq_v2, IntPacking::awq}) {
    for (const unsigned bits : {2u, 4u, 8u}) {
      if (packing == IntPacking::awq && bits != 4) continue;
      for (const st::DType dtype : {st::DType::BF16, st::DType::F16, st::DType::F32}) {
        if (dtype != st::DType::BF16 && bits != 4) continue;
        const bool awq = packing == IntPacking::awq;
        const std::uint64_t code_words = awq ? in * out / 8 : in * bits / 32 * out;
        std::vector<std::byte> qweight(4 * code_words), qzeros(4 * groups * out * bits / 32);
        for (auto& b : qweight) b = std::byte(random() & 0xFF);
        for (auto& b : qzeros) b = std::byte(random() & 0xFF);
        std::vector<std::byte> scales = every_scale(dtype);
        if (dtype == st::DType::F32) scales.resize(4 * groups * out);
        for (std::size_t i = 0; dtype == st::DType::F32 && i < scales.size(); i += 4) {
          if (i >= 4 * 16384) std::memcpy(scales.data() + i, scales.data() + i % (4 * 16384), 4);
        }
        // Whole weight, then a band of rows from 40 (not a multiple of 32 or 8), then act-order.
        for (const int shape : {0, 1, 2}) {
          if (shape != 0 && bits != 4) continue;
          const IntQuant quant{packing, bits, in, out, groups, 16};
          std::vector<std::byte> group_index;
          if (shape == 2) {
            group_index.resize(4 * in);
            for (std::uint64_t i = 0; i < in; ++i) {
              // Runs of 16 on average (the AVX2 runs), in shuffled group order, short ones too.
              const auto g = static_cast<std::int32_t>((i / 32 * 5 + (i % 32 < 3 ? 1 : 0)) % groups);
              std::memcpy(group_index.data() + 4 * i, &g, 4);
            }
          }
          const IntTile tile = shape == 1 ? IntTile{40, 1000, 0, in} : IntTile{0, out, 0, in};
          const IntTileSources need = int_tile_sources(quant, tile, !group_index.empty());
          // The slices the tile reads, row-major.
          const auto slice = [](const std::vector<std::byte>& all, std::uint64_t all_cols, IndexRange rows,
                                IndexRange cols, std::uint64_t size) {
            std::vector<std::byte> part;
            for (std::uint64_t r = rows.begin; r < rows.end; ++r) {
              const auto* from = all.data() + size * (r * all_cols + cols.begin);
              part.insert(part.end(), from, from + size * cols.size());
            }
            return part;
          };
          const std::uint64_t scale_size = st::dtype_bits(dtype) / 8;
          const std::vector<std::byte> codes_part =
              slice(qweight, awq ? out / 8 : out, need.codes_rows, need.codes_cols, 4);
          const std::vector<std::byte> zeros_part =
              slice(qzeros, out * bits / 32, {0, groups}, need.zeros_cols, 4);
          const std::vector<std::byte> scales_part =
              slice(scales, out, {0, groups}, need.scales_cols, scale_size);
          const IntQuantBand band{quant,       tile,  codes_part,  zeros_part,
                                  scales_part, dtype, group_index, st::DType::I32};
          // (F16 output is portable code both ways.) The other NaN policy once per packing and width.
          for (const Bf16Nan nan : {Bf16Nan::canonical, Bf16Nan::torch_cpu}) {
            if (nan != Bf16Nan::canonical && (shape != 0 || dtype != st::DType::BF16)) continue;
            const OutputFormat format{st::DType::BF16, nan};
            std::vector<std::byte> portable(2 * tile.out_count * in), fast(portable.size());
            dequantize_int(band, format, portable, Isa::portable);
            dequantize_int(band, format, fast, Isa::avx2);
            const std::size_t at = first_difference(portable, fast);
            INFO("packing " << static_cast<int>(packing) << ", " << bits << " bits, scales "
                            << st::dtype_name(dtype) << ", shape " << shape << ", NaN 0x" << std::hex
                            << static_cast<unsigned>(nan) << std::dec << ": first difference at element "
                            << at / 2);
            CHECK(at == portable.size());
          }
        }
      }
    }
  }
}

TEST_CASE(
    "requantize_fp4_to_fp8, AVX2 = portable: every scale code under every largest code, all FP4 bytes") {
  if (!avx2_to_compare()) return;
  const test::Fp4Weights w = test::every_scale_under_every_largest();
  const auto& [rows, cols, packed, scale] = w;
  std::vector<std::byte> weight_portable(rows * cols), weight_fast(rows * cols);
  std::vector<std::byte> scale_portable(cols / 128), scale_fast(cols / 128);
  requantize_fp4_to_fp8(packed, scale, rows, cols, weight_portable, scale_portable, Isa::portable);
  requantize_fp4_to_fp8(packed, scale, rows, cols, weight_fast, scale_fast, Isa::avx2);
  CHECK(first_difference(weight_portable, weight_fast) == weight_portable.size());
  CHECK(scale_portable == scale_fast);
}

TEST_CASE("requantize_fp4_to_fp8, AVX2 = portable: random tensors, scale codes over 0..254, a NaN block") {
  if (!avx2_to_compare()) return;
  std::mt19937 random(5);
  constexpr std::size_t rows = 384, cols = 640;
  std::vector<std::byte> packed(rows * cols / 2), scale(rows * cols / 32);
  for (auto& b : packed) b = std::byte(random() & 0xFF);
  for (auto& b : scale) b = std::byte(random() % 255);
  scale[130 * (cols / 32) + 7] = std::byte{0xFF};  // one NaN block of 15
  std::vector<std::byte> weight_portable(rows * cols), weight_fast(rows * cols);
  std::vector<std::byte> scale_portable(rows / 128 * (cols / 128)), scale_fast(scale_portable.size());
  requantize_fp4_to_fp8(packed, scale, rows, cols, weight_portable, scale_portable, Isa::portable);
  requantize_fp4_to_fp8(packed, scale, rows, cols, weight_fast, scale_fast, Isa::avx2);
  CHECK(first_difference(weight_portable, weight_fast) == weight_portable.size());
  CHECK(scale_portable == scale_fast);
}
