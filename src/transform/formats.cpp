#include <shardwise/transform/kernels.hpp>

#include <bit>

#include "transform/formats.hpp"
#include "transform/rounding.hpp"

// Transcriptions of PyTorch's c10 conversions (c10/util/Float8_e4m3fn.h, Float8_e8m0fnu-inl.h,
// BFloat16.h), which DeepSeek's converters run on CPU; the comments give the consequences that the
// tests check code by code.

namespace shardwise::transform {

namespace {

constexpr std::uint32_t bits_of(float value) noexcept { return std::bit_cast<std::uint32_t>(value); }
constexpr float float_of(std::uint32_t bits) noexcept { return std::bit_cast<float>(bits); }

// c10::detail::fp8e4m3fn_to_fp32_value: the code moved into a float's fields, subnormals
// renormalised, 0x7F/0xFF made NaN (0x7FF00000 with the sign).
constexpr float decode_e4m3(std::uint8_t code) noexcept {
  const std::uint32_t word = static_cast<std::uint32_t>(code) << 24;
  const std::uint32_t sign = word & 0x80000000u;
  const std::uint32_t nonsign = word & 0x7FFFFFFFu;
  if (nonsign == 0) return float_of(sign);
  const std::uint32_t leading_zeros = static_cast<std::uint32_t>(std::countl_zero(nonsign));
  const std::uint32_t renorm_shift = leading_zeros > 4 ? leading_zeros - 4 : 0;
  const std::uint32_t inf_nan_mask =
      static_cast<std::uint32_t>(static_cast<std::int32_t>(nonsign + 0x01000000u) >> 8) & 0x7F800000u;
  return float_of(sign |
                  ((((nonsign << renorm_shift) >> 4) + ((0x78u - renorm_shift) << 23)) | inf_nan_mask));
}

constexpr std::array<float, 256> make_e4m3_table() noexcept {
  std::array<float, 256> table{};
  for (unsigned code = 0; code < 256; ++code) table[code] = decode_e4m3(static_cast<std::uint8_t>(code));
  return table;
}

constexpr std::array<float, 256> kE4m3 = make_e4m3_table();
constexpr std::array<float, 16> kE2m1 = {0.0f, 0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                         0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

}  // namespace

const std::array<float, 256>& e4m3_table() noexcept { return kE4m3; }
const std::array<float, 16>& e2m1_table() noexcept { return kE2m1; }

float e4m3_to_f32(std::uint8_t code) noexcept { return kE4m3[code]; }

float e8m0_to_f32(std::uint8_t code) noexcept {
  if (code == 0x00) return float_of(0x00400000u);  // 2^-127, a float32 subnormal
  if (code == 0xFF) return float_of(0x7F800001u);  // NaN
  return float_of(static_cast<std::uint32_t>(code) << 23);
}

float e2m1_to_f32(std::uint8_t nibble) noexcept { return kE2m1[nibble & 0x0Fu]; }

// c10::detail::fp8e4m3fn_from_fp32_value. No saturation: |x| >= 480 (inf and NaN included) gives
// 0x7F with the sign, so (464, 480) rounds to NaN; below 2^-6 adding 2^14 as a float32 rounds to a
// multiple of 2^-9 (the subnormal grid), ties to even.
std::uint8_t f32_to_e4m3(float value) noexcept {
  constexpr std::uint32_t kFp8Max = 1087u << 20;     // 480.0f
  constexpr std::uint32_t kDenormMask = 141u << 23;  // 2^14
  std::uint32_t magnitude = bits_of(value);
  const std::uint32_t sign = magnitude & 0x80000000u;
  magnitude ^= sign;
  std::uint32_t result;
  if (magnitude >= kFp8Max) {
    result = 0x7F;
  } else if (magnitude < (121u << 23)) {  // below 2^-6
    result = bits_of(float_of(magnitude) + float_of(kDenormMask)) - kDenormMask;
  } else {
    const std::uint32_t mantissa_odd = (magnitude >> 20) & 1u;
    result = (magnitude + (static_cast<std::uint32_t>(7 - 127) << 23) + 0x7FFFFu + mantissa_odd) >> 20;
  }
  return static_cast<std::uint8_t>((result & 0xFFu) | (sign >> 24));
}

// c10::detail::fp8e8m0fnu_from_fp32_value: the float's exponent field, sign ignored, rounded up
// when the guard bit is set and the round, sticky or implicit bit is (a normal x rounds up iff its
// mantissa is >= 1.5; a subnormal only above 2^-127, so every subnormal <= 2^-127 gives 0x00);
// infinities and NaN give 0xFF, and so does rounding 254 up.
std::uint8_t f32_to_e8m0(float value) noexcept {
  const std::uint32_t bits = bits_of(value);
  const std::uint32_t exponent = (bits >> 23) & 0xFFu;
  if (exponent == 0xFF) return 0xFF;
  const bool guard = (bits & 0x400000u) != 0;
  const bool round_or_sticky = (bits & 0x3FFFFFu & ~0x400000u) != 0;
  const bool implicit_bit = exponent != 0;
  const bool round_up = guard && (round_or_sticky || implicit_bit);
  return static_cast<std::uint8_t>(exponent + (round_up ? 1u : 0u));
}

std::uint16_t f32_to_bf16(float value, std::uint16_t nan_bits) noexcept {
  return detail::round_bf16(value, nan_bits);
}

}  // namespace shardwise::transform
