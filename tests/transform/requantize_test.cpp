// FP4 (E2M1) with E8M0 scales per 1 x 32 -> E4M3 with E8M0 scales per 128 x 128, against a
// straightforward transcription of DeepSeek-V4 convert.py's tensor algorithm (amax, divide,
// multiply, cast) written with the exact format models: every (largest scale code, scale code)
// pair of a block with every FP4 code in both nibbles, NaN blocks, blocks whose largest code is
// <= 5, random tensors processed whole and in bands, and the size checks.

#include <shardwise/core/error.hpp>
#include <shardwise/transform/kernels.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "transform/exact_formats.hpp"
#include "transform/fp4_patterns.hpp"

using namespace shardwise;
using namespace shardwise::transform;
namespace exact = shardwise::test::exact;

namespace {

struct Requantized {
  std::vector<std::uint8_t> weight, scale;
};

// cast_e2m1fn_to_e4m3fn, one 128 x 128 block at a time, element by element.
Requantized reference(const std::vector<std::byte>& packed, const std::vector<std::byte>& scale,
                      std::size_t rows, std::size_t cols) {
  Requantized out{std::vector<std::uint8_t>(rows * cols),
                  std::vector<std::uint8_t>(rows / 128 * (cols / 128))};
  const auto scale_at = [&](std::size_t r, std::size_t group) {
    return exact::e8m0_value(std::to_integer<std::uint8_t>(scale[r * (cols / 32) + group]));
  };
  for (std::size_t bo = 0; bo < rows / 128; ++bo) {
    for (std::size_t bi = 0; bi < cols / 128; ++bi) {
      float amax = -INFINITY;  // torch.amax: NaN propagates
      for (std::size_t r = bo * 128; r < bo * 128 + 128; ++r) {
        for (std::size_t g = bi * 4; g < bi * 4 + 4; ++g) {
          const float s = scale_at(r, g);
          amax = std::isnan(s) || std::isnan(amax) ? exact::kNaN : std::max(amax, s);
        }
      }
      const float smax = amax / 64.0f;
      out.scale[bo * (cols / 128) + bi] = exact::round_to_e8m0(smax);
      for (std::size_t r = bo * 128; r < bo * 128 + 128; ++r) {
        for (std::size_t c = bi * 128; c < bi * 128 + 128; ++c) {
          const float offset = scale_at(r, c / 32) / smax;
          const auto byte = std::to_integer<std::uint8_t>(packed[r * (cols / 2) + c / 2]);
          const float value = exact::e2m1_value(c % 2 == 0 ? byte & 0xF : byte >> 4);
          out.weight[r * cols + c] = exact::round_to_e4m3(exact::product(value, offset));
        }
      }
    }
  }
  return out;
}

Requantized run(const std::vector<std::byte>& packed, const std::vector<std::byte>& scale, std::size_t rows,
                std::size_t cols) {
  std::vector<std::byte> weight(rows * cols), new_scale(rows / 128 * (cols / 128));
  requantize_fp4_to_fp8(packed, scale, rows, cols, weight, new_scale);
  Requantized out;
  for (std::byte b : weight) out.weight.push_back(std::to_integer<std::uint8_t>(b));
  for (std::byte b : new_scale) out.scale.push_back(std::to_integer<std::uint8_t>(b));
  return out;
}

std::size_t mismatches(const std::vector<std::uint8_t>& got, const std::vector<std::uint8_t>& want) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < want.size(); ++i) count += got[i] != want[i] ? 1 : 0;
  return count;
}

}  // namespace

TEST_CASE("requantize_fp4_to_fp8: every scale code under every largest code, with all FP4 codes") {
  const test::Fp4Weights w = test::every_scale_under_every_largest();
  const auto& [rows, cols, packed, scale] = w;
  const Requantized got = run(packed, scale, rows, cols), want = reference(packed, scale, rows, cols);
  CHECK(mismatches(got.weight, want.weight) == 0);
  CHECK(got.scale == want.scale);
  // What the reference's arithmetic comes to, spelled out.
  for (std::size_t block = 0; block <= 6; ++block) CHECK(got.scale[block] == 0x00);  // subnormal smax
  CHECK(got.scale[7] == 0x01);
  CHECK(got.scale[200] == 200 - 6);
  CHECK(got.scale[255] == 0xFF);
  for (std::size_t c = 255 * 128; c < cols; ++c) CHECK(got.weight[c] == 0x7F);  // NaN block, row 0
  // Row 0, group 0 of block 200 has the largest code: offset 64; byte 0x00 ^ 0 -> codes 0, 0; byte
  // 0x77 -> 6 * 64 = 384 = 0x7C in both columns; byte 0xFF -> -384 = 0xFC.
  CHECK(got.weight[200 * 128 + 0] == 0x00);
  CHECK(got.weight[200 * 128 + 14] == 0x7C);
  CHECK(got.weight[200 * 128 + 31] == 0xFC);
}

TEST_CASE("requantize_fp4_to_fp8: random tensors with NaN and tiny blocks, whole and in bands of 128 rows") {
  std::mt19937 random(42);
  constexpr std::size_t rows = 512, cols = 384;
  std::vector<std::byte> packed(rows * cols / 2), scale(rows * cols / 32);
  for (auto& b : packed) b = std::byte(random() & 0xFF);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t group = 0; group < cols / 32; ++group) {
      const std::size_t block = (r / 128) * (cols / 128) + group / 4;  // 12 blocks
      std::uint8_t code = static_cast<std::uint8_t>(120 + random() % 12);
      if (block == 3) code = static_cast<std::uint8_t>(random() % 6);  // all codes <= 5
      if (block == 5 && r % 128 == 77 && group % 4 == 2) code = 0xFF;  // one NaN scale
      if (block == 8) code = r % 2 == 0 ? 0 : 254;                     // offsets underflow
      scale[r * (cols / 32) + group] = std::byte(code);
    }
  }
  const Requantized whole = run(packed, scale, rows, cols), want = reference(packed, scale, rows, cols);
  CHECK(mismatches(whole.weight, want.weight) == 0);
  CHECK(whole.scale == want.scale);
  CHECK(whole.scale[3] == 0x00);
  CHECK(whole.scale[5] == 0xFF);
  for (std::size_t band = 0; band < rows / 128; ++band) {
    const std::vector<std::byte> band_packed(packed.begin() + band * 128 * cols / 2,
                                             packed.begin() + (band + 1) * 128 * cols / 2);
    const std::vector<std::byte> band_scale(scale.begin() + band * 128 * cols / 32,
                                            scale.begin() + (band + 1) * 128 * cols / 32);
    const Requantized part = run(band_packed, band_scale, 128, cols);
    CHECK(std::equal(part.weight.begin(), part.weight.end(), whole.weight.begin() + band * 128 * cols));
    CHECK(std::equal(part.scale.begin(), part.scale.end(), whole.scale.begin() + band * (cols / 128)));
  }
}

TEST_CASE(
    "requantize_fp4_scale: the new scale alone, for every largest code of a block, NaN and codes <= 5") {
  // One block per largest code 0..255; the other scale codes of the block are at most that code.
  constexpr std::size_t rows = 128, cols = 256 * 128;
  std::vector<std::byte> scale(rows * cols / 32);
  std::mt19937 random(7);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t group = 0; group < cols / 32; ++group) {
      const std::size_t largest = group / 4;
      const bool is_largest = r == (largest * 37) % 128 && group % 4 == largest % 4;
      scale[r * (cols / 32) + group] = std::byte(is_largest ? largest : random() % (largest + 1) % 255);
    }
  }
  const std::vector<std::byte> packed(rows * cols / 2);
  const Requantized want = reference(packed, scale, rows, cols);
  std::vector<std::byte> got(cols / 128);
  requantize_fp4_scale(scale, rows, cols, got);
  for (std::size_t block = 0; block < 256; ++block) {
    INFO("largest code " << block);
    CHECK(std::to_integer<std::uint8_t>(got[block]) == want.scale[block]);
  }
  CHECK(std::to_integer<std::uint8_t>(got[255]) == 0xFF);
  CHECK(std::to_integer<std::uint8_t>(got[5]) == 0x00);
  CHECK_THROWS_AS(requantize_fp4_scale(scale, rows, cols - 1, got), Error);
}

TEST_CASE("requantize_fp4_to_fp8: a negative FP4 value whose product rounds to zero gives -0 (0x80)") {
  // Largest code 127 in row 0's group 0; group 1 has code 114: offset 2^-7, so -0.5 -> -2^-8 (the
  // subnormal 2 * 2^-9, 0x82) and 6 -> 1.5 * 2^-5 (0x14); group 2 has code 110: offset 2^-11, so
  // -0.5 -> -2^-12, which rounds to -0 (0x80), and 6 -> 1.5 * 2^-9, a tie between 1 and 2 (0x02).
  std::vector<std::byte> packed(128 * 64, std::byte{0x79}), scale(128 * 4, std::byte{100});
  scale[0] = std::byte{127};
  scale[1] = std::byte{114};
  scale[2] = std::byte{110};
  const Requantized got = run(packed, scale, 128, 128);
  CHECK(got.scale[0] == 127 - 6);
  CHECK(got.weight[32] == 0x82);  // low nibble 9 = -0.5
  CHECK(got.weight[33] == 0x14);  // high nibble 7 = 6
  CHECK(got.weight[64] == 0x80);
  CHECK(got.weight[65] == 0x02);
  CHECK(got.weight == reference(packed, scale, 128, 128).weight);
}

TEST_CASE("requantize_fp4_to_fp8 refuses shapes and spans that do not fit, naming the numbers") {
  std::vector<std::byte> packed(128 * 64), scale(128 * 4), weight(128 * 128), new_scale(1);
  struct Bad {
    std::size_t packed_bytes, scale_bytes, rows, cols, weight_bytes, new_scale_bytes;
    std::string message;
  };
  const std::vector<Bad> cases{
      {8192, 512, 100, 128, 16384, 1,
       "requantize_fp4_to_fp8: rows and cols must be multiples of 128 (rows 100, cols 128)"},
      {8191, 512, 128, 128, 16384, 1,
       "requantize_fp4_to_fp8: weight holds 8191 bytes, not 8192 (rows 128, cols 128)"},
      {8192, 511, 128, 128, 16384, 1,
       "requantize_fp4_to_fp8: scale holds 511 bytes, not 512 (rows 128, cols 128)"},
      {8192, 512, 128, 128, 16383, 1,
       "requantize_fp4_to_fp8: output weight holds 16383 bytes, not 16384 (rows 128, cols 128)"},
      {8192, 512, 128, 128, 16384, 0,
       "requantize_fp4_to_fp8: output scale holds 0 bytes, not 1 (rows 128, cols 128)"},
      {8192, 512, 1ull << 40, 1ull << 40, 16384, 1,
       "requantize_fp4_to_fp8: rows x cols overflows 64 bits (rows 1099511627776, cols 1099511627776)"},
  };
  for (const Bad& c : cases) {
    INFO(c.message);
    try {
      requantize_fp4_to_fp8(std::span(packed).first(c.packed_bytes), std::span(scale).first(c.scale_bytes),
                            c.rows, c.cols, std::span(weight).first(c.weight_bytes),
                            std::span(new_scale).first(c.new_scale_bytes));
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()) == c.message);
    }
  }
}
