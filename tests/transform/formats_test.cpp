// The scalar format conversions against the independent models of exact_formats.hpp: every code of
// the one-byte and four-bit formats, and for the float32 -> code conversions every boundary of the
// target grid (each value, each midpoint and the floats either side of it) plus a sweep of bit
// patterns over all exponents.

#include <shardwise/transform/kernels.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "transform/exact_formats.hpp"

using namespace shardwise::transform;
namespace exact = shardwise::test::exact;

namespace {

std::uint32_t bits(float value) { return std::bit_cast<std::uint32_t>(value); }
float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }

// Each float in `values`, its two neighbours, and all of them negated.
std::vector<float> with_neighbours(const std::vector<double>& values) {
  std::vector<float> out;
  for (double v : values) {
    const auto f = static_cast<float>(v);
    for (float x : {f, std::nextafter(f, 0.0f), std::nextafter(f, INFINITY)}) {
      out.push_back(x);
      out.push_back(-x);
    }
  }
  return out;
}

// Every 16,411th bit pattern plus its neighbour: all exponents, both signs, NaN payloads.
std::vector<float> bit_sweep() {
  std::vector<float> out;
  for (std::uint64_t b = 0; b <= 0xFFFFFFFFu; b += 16411) {
    out.push_back(from_bits(static_cast<std::uint32_t>(b)));
    out.push_back(from_bits(static_cast<std::uint32_t>(b + 1)));
  }
  return out;
}

}  // namespace

TEST_CASE("e4m3_to_f32 is exact on all 256 codes, NaN with its sign as 0x7FF00000") {
  for (unsigned code = 0; code < 256; ++code) {
    INFO("code 0x" << std::hex << code);
    const float got = e4m3_to_f32(static_cast<std::uint8_t>(code));
    const float want = exact::e4m3_value(static_cast<std::uint8_t>(code));
    if (std::isnan(want)) {
      CHECK(bits(got) == (0x7FF00000u | (code & 0x80u) << 24));
    } else {
      CHECK(bits(got) == bits(want));  // also tells 0x80 (-0) from 0x00
    }
  }
  CHECK(e4m3_to_f32(0x7E) == 448.0f);
  CHECK(e4m3_to_f32(0x01) == std::ldexp(1.0f, -9));
  CHECK(bits(e4m3_to_f32(0x80)) == 0x80000000u);
}

TEST_CASE("e8m0_to_f32 is 2^(code-127) on all 256 codes, 0x00 is the subnormal 2^-127, 0xFF NaN") {
  for (unsigned code = 0; code < 255; ++code) {
    INFO("code " << code);
    CHECK(bits(e8m0_to_f32(static_cast<std::uint8_t>(code))) ==
          bits(exact::e8m0_value(static_cast<std::uint8_t>(code))));
  }
  CHECK(bits(e8m0_to_f32(0x00)) == 0x00400000u);
  CHECK(bits(e8m0_to_f32(0xFF)) == 0x7F800001u);
}

TEST_CASE("e2m1_to_f32 on all 16 codes: -0 decodes to +0, the high nibble is ignored") {
  for (unsigned byte = 0; byte < 256; ++byte) {
    INFO("byte 0x" << std::hex << byte);
    CHECK(bits(e2m1_to_f32(static_cast<std::uint8_t>(byte))) ==
          bits(exact::e2m1_value(static_cast<std::uint8_t>(byte & 0xF))));
  }
  CHECK(bits(e2m1_to_f32(8)) == 0u);
  CHECK(e2m1_to_f32(7) == 6.0f);
  CHECK(e2m1_to_f32(15) == -6.0f);
}

TEST_CASE("f32_to_e4m3 at every boundary of the E4M3 grid, including 448, 464, 480 and the subnormals") {
  std::vector<double> points{0.0,
                             448.0,
                             464.0,
                             480.0,
                             500.0,
                             1e30,
                             std::ldexp(1.0, -10),
                             std::ldexp(3.0, -11),
                             std::ldexp(1.0, -149),
                             std::ldexp(1.0, -126)};
  for (unsigned code = 0; code < 0x7F; ++code) {
    const double value = exact::e4m3_value(static_cast<std::uint8_t>(code));
    const double next = code + 1 == 0x7F ? 480.0 : exact::e4m3_value(static_cast<std::uint8_t>(code + 1));
    points.push_back(value);
    points.push_back((value + next) / 2);
  }
  std::vector<float> inputs = with_neighbours(points);
  for (float special : {INFINITY, -INFINITY, exact::kNaN, -exact::kNaN, from_bits(0x7F800001u)}) {
    inputs.push_back(special);
  }
  const std::vector<float> sweep = bit_sweep();
  inputs.insert(inputs.end(), sweep.begin(), sweep.end());
  std::size_t mismatches = 0;
  for (float x : inputs) {
    if (f32_to_e4m3(x) != exact::round_to_e4m3(x)) {
      if (++mismatches <= 10) {
        FAIL_CHECK("f32 0x" << std::hex << bits(x) << ": got 0x" << int{f32_to_e4m3(x)} << ", want 0x"
                            << int{exact::round_to_e4m3(x)});
      }
    }
  }
  CHECK(mismatches == 0);
  // The consequences DeepSeek's fp8 cast relies on, spelled out.
  CHECK(f32_to_e4m3(448.0f) == 0x7E);
  CHECK(f32_to_e4m3(464.0f) == 0x7E);
  CHECK(f32_to_e4m3(std::nextafter(464.0f, 480.0f)) == 0x7F);
  CHECK(f32_to_e4m3(479.99f) == 0x7F);
  CHECK(f32_to_e4m3(-1000.0f) == 0xFF);
  CHECK(f32_to_e4m3(std::ldexp(1.0f, -10)) == 0x00);   // a tie: to even 0
  CHECK(f32_to_e4m3(-std::ldexp(1.0f, -10)) == 0x80);  // keeps its sign
  CHECK(f32_to_e4m3(std::ldexp(3.0f, -10)) == 0x02);   // 1.5 * 2^-9: a tie between codes 1 and 2, to 2
  CHECK(f32_to_e4m3(std::ldexp(3.0f, -11)) == 0x01);   // 0.75 * 2^-9: nearest is code 1
}

TEST_CASE("f32_to_e8m0 rounds the exponent up iff the mantissa is >= 1.5, subnormals, 0xFF") {
  std::vector<double> points{0.0,
                             std::ldexp(1.0, -149),
                             std::ldexp(1.0, -127),
                             std::ldexp(1.0, -128),
                             std::ldexp(3.0, -129),
                             std::ldexp(1.0, -126),
                             std::ldexp(1.5, 127),
                             std::ldexp(1.0, 127)};
  for (int e = -126; e <= 127; ++e) {
    for (double m : {1.0, 1.25, 1.4999999, 1.5, 1.75}) points.push_back(std::ldexp(m, e));
  }
  std::vector<float> inputs = with_neighbours(points);
  for (float special : {INFINITY, -INFINITY, exact::kNaN, from_bits(0x7F7FFFFFu)}) inputs.push_back(special);
  const std::vector<float> sweep = bit_sweep();
  inputs.insert(inputs.end(), sweep.begin(), sweep.end());
  std::size_t mismatches = 0;
  for (float x : inputs) {
    if (f32_to_e8m0(x) != exact::round_to_e8m0(x)) {
      if (++mismatches <= 10) {
        FAIL_CHECK("f32 0x" << std::hex << bits(x) << ": got 0x" << int{f32_to_e8m0(x)} << ", want 0x"
                            << int{exact::round_to_e8m0(x)});
      }
    }
  }
  CHECK(mismatches == 0);
  CHECK(f32_to_e8m0(1.0f) == 127);
  CHECK(f32_to_e8m0(1.5f) == 128);
  CHECK(f32_to_e8m0(-1.4f) == 127);
  CHECK(f32_to_e8m0(std::ldexp(1.0f, -127)) == 0x00);  // the smax of a block whose largest code is 6
  CHECK(f32_to_e8m0(std::ldexp(1.0f, -133)) == 0x00);  // ... or 0
  CHECK(f32_to_e8m0(std::ldexp(1.5f, 127)) == 0xFF);
}

TEST_CASE("f32_to_bf16 rounds to nearest even, NaN becomes the policy's bits") {
  std::vector<float> inputs =
      with_neighbours({0.0, 1.0, 1.00390625, 1.005859375, std::ldexp(1.0, -149), 3.0e38});
  for (float special :
       {INFINITY, -INFINITY, from_bits(0x7F7FFFFFu), from_bits(0x7F7F8000u), from_bits(0x7F7F7FFFu)}) {
    inputs.push_back(special);
  }
  const std::vector<float> sweep = bit_sweep();
  inputs.insert(inputs.end(), sweep.begin(), sweep.end());
  for (Bf16Nan policy : {Bf16Nan::torch_cpu, Bf16Nan::canonical, Bf16Nan::triton}) {
    const auto nan_bits = static_cast<std::uint16_t>(policy);
    std::size_t mismatches = 0;
    for (float x : inputs) {
      if (f32_to_bf16(x, nan_bits) != exact::round_to_bf16(x, nan_bits)) ++mismatches;
    }
    INFO("NaN policy 0x" << std::hex << nan_bits);
    CHECK(mismatches == 0);
    CHECK(f32_to_bf16(from_bits(0xFFC00001u), nan_bits) == nan_bits);
  }
  CHECK(f32_to_bf16(from_bits(0x7F7FFFFFu), 0) == 0x7F80);  // rounds to infinity
  CHECK(f32_to_bf16(from_bits(0x3F818000u), 0) == 0x3F82);  // tie to even, up
  CHECK(f32_to_bf16(from_bits(0x3F808000u), 0) == 0x3F80);  // tie to even, down
}
