// The kernels' AVX2 code against their portable code, byte for byte, on the same inputs: all 256
// E4M3 codes x all 256 E8M0 codes and x 65,536 F32 scales (every exponent and sign, random
// mantissas, the special values), rows whose length leaves tails of every size, and FP4 blocks
// under every (largest, scale) code pair; dequantize_fp8 likewise with every scale of each dtype
// (all BF16 and F16 patterns, all E8M0 codes). The portable code itself is checked against independent
// expectations by dequantize_test and requantize_test, which run best_isa().

#include <shardwise/transform/kernels.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include <shardwise/transform/fp8_scales.hpp>
#include <shardwise/transform/isa.hpp>
#include "transform/fp4_patterns.hpp"

using namespace shardwise;
using namespace shardwise::transform;

namespace {

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
  struct Shape {
    std::uint64_t rows, cols, block_rows, block_cols;
  };
  for (const Shape s : {Shape{300, 257, 128, 128}, Shape{64, 77, 8, 16}, Shape{33, 47, 1, 47},
                        Shape{5, 7, 1, 1}, Shape{130, 1000, 128, 128}, Shape{16, 31, 16, 31}}) {
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
  const std::uint32_t specials[] = {0x7FC00000u, 0xFFC00000u, 0x7F800000u, 0xFF800000u, 0u, 0x80000000u,
                                    1u,          0x7F800001u, 0x80000001u, 0x3EAAAAABu, 0x00400000u};
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
  struct Shape {
    std::uint64_t rows, cols, block_rows, block_cols;
  };
  for (const Shape s : {Shape{300, 257, 128, 128}, Shape{64, 77, 8, 16}, Shape{33, 47, 1, 47},
                        Shape{5, 7, 1, 1}, Shape{130, 1000, 128, 128}, Shape{16, 31, 16, 31},
                        Shape{40, 300, ScaleGrid::kWhole, ScaleGrid::kWhole}}) {
    for (const st::DType dtype : {st::DType::F32, st::DType::BF16, st::DType::F16, st::DType::F8_E8M0}) {
      const std::uint64_t esize = st::dtype_bits(dtype) / 8;
      const std::uint64_t scale_rows = s.block_rows == ScaleGrid::kWhole ? 1 : (s.rows + s.block_rows - 1) / s.block_rows;
      const std::uint64_t scale_cols =
          (s.block_cols == ScaleGrid::kWhole ? 1 : (s.cols + s.block_cols - 1) / s.block_cols) + 1;  // padding
      std::vector<std::byte> weight(s.rows * s.cols), scale(scale_rows * scale_cols * esize);
      for (auto& b : weight) b = std::byte(random() & 0xFF);
      for (std::size_t i = 0; i < scale.size(); ++i) {
        // Sign-and-exponent bytes kept in a range that meets every code without overflowing.
        scale[i] = std::byte(dtype == st::DType::F8_E8M0 ? 100 + random() % 40
                             : i % esize == esize - 1 ? 0x30 + random() % 24
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
                             dtype, grid, first, count, s.cols, scale_cols};
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
