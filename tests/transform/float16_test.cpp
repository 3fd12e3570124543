// The 16-bit floats of the dequantisation kernels against their definitions (exact_formats.hpp):
// every F16 and BF16 pattern widened, and float32 -> F16 rounding on every F16 value, every
// half-way point and its float32 neighbours, and a sweep over all float32 patterns.

#include <shardwise/transform/float16.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include <catch2/catch.hpp>

#include "transform/exact_formats.hpp"

using namespace shardwise;
using namespace shardwise::transform;
namespace exact = shardwise::test::exact;

namespace {

bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) ||
         std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

float next_up(float x) { return std::nextafter(x, std::numeric_limits<float>::infinity()); }
float next_down(float x) { return std::nextafter(x, -std::numeric_limits<float>::infinity()); }

}  // namespace

TEST_CASE("f16_to_f32 and bf16_to_f32 are exact for all 65,536 patterns") {
  std::size_t mismatches = 0;
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    const auto b = static_cast<std::uint16_t>(bits);
    mismatches += same_float(f16_to_f32(b), exact::f16_value(b)) ? 0 : 1;
    mismatches += same_float(bf16_to_f32(b), exact::bf16_value(b)) ? 0 : 1;
  }
  CHECK(mismatches == 0);
  CHECK(std::bit_cast<std::uint32_t>(f16_to_f32(0x8000)) == 0x80000000u);  // -0 keeps its sign
  CHECK(std::signbit(f16_to_f32(0xFE00)));                                 // so does a NaN
}

TEST_CASE("f32_to_f16 rounds to nearest even: every F16 value, every half-way point and its neighbours") {
  std::size_t mismatches = 0, checked = 0;
  const auto check = [&](float x) {
    ++checked;
    mismatches += f32_to_f16(x) == exact::round_to_f16(x) ? 0 : 1;
  };
  for (std::uint32_t code = 0; code < 0x7C00; ++code) {
    for (const std::uint32_t sign : {0u, 0x8000u}) {
      const float value = exact::f16_value(static_cast<std::uint16_t>(code | sign));
      check(value);
      check(next_up(value));
      check(next_down(value));
      const double upper =
          code + 1 == 0x7C00 ? 65536.0 : std::fabs(exact::f16_value(static_cast<std::uint16_t>(code + 1)));
      const auto half_way = static_cast<float>((std::fabs(static_cast<double>(value)) + upper) / 2);  // exact
      const float signed_half = sign != 0 ? -half_way : half_way;
      check(signed_half);
      check(next_up(signed_half));
      check(next_down(signed_half));
    }
  }
  CHECK(checked > 350000);
  CHECK(mismatches == 0);
}

TEST_CASE("f32_to_f16 over a sweep of all float32 patterns, and its special values") {
  std::size_t mismatches = 0;
  for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << 32); bits += 4093) {
    const float x = std::bit_cast<float>(static_cast<std::uint32_t>(bits));
    mismatches += f32_to_f16(x) == exact::round_to_f16(x) ? 0 : 1;
  }
  CHECK(mismatches == 0);
  struct Case {
    std::uint32_t in;
    std::uint16_t out;
  };
  const Case cases[] = {
      {0x7F800000u, 0x7C00}, {0xFF800000u, 0xFC00},                         // infinities
      {0x7FC00000u, 0x7E00}, {0xFFC00001u, 0x7E00}, {0x7F800001u, 0x7E00},  // every NaN canonical
      {0x477FE000u, 0x7BFF}, {0x477FEFFFu, 0x7BFF}, {0x477FF000u, 0x7C00},  // 65504, below 65520, 65520
      {0x33000000u, 0x0000}, {0x33000001u, 0x0001}, {0xB3000000u, 0x8000},  // 2^-25: a tie to 0
      {0x33C00000u, 0x0002}, {0x387FC000u, 0x03FF}, {0x387FE000u, 0x0400},  // 1.5 x 2^-24 -> 2; to 2^-14
      {0x00000001u, 0x0000}, {0x80000001u, 0x8000},                         // float32 subnormals
  };
  for (const Case& c : cases) {
    INFO(std::hex << c.in);
    CHECK(f32_to_f16(std::bit_cast<float>(c.in)) == c.out);
  }
}
