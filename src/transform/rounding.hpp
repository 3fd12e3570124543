#pragma once
// float32 -> BF16 and F16 bits, inline for the kernels' per-element loops. The public f32_to_bf16
// (kernels.hpp) and f32_to_f16 (float16.hpp) are these functions.

#include <bit>
#include <cstdint>

namespace shardwise::transform::detail {

// Round to nearest even by adding 0x7FFF plus the lowest kept bit (a carry correctly bumps the
// exponent, up to infinity); NaN is the caller's choice of bits.
inline std::uint16_t round_bf16(float value, std::uint16_t nan_bits) noexcept {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto rounded = static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
  return (bits & 0x7FFFFFFFu) > 0x7F800000u ? nan_bits : rounded;
}

// Normal results: the float's exponent rebiased (127 -> 15) and its mantissa rounded at bit 13 by
// adding 0xFFF plus the lowest kept bit (a carry bumps the exponent, 65504 stays the largest below
// the overflow bound 65520). Below 2^-14 the result is an integer count of 2^-24, rounded from the
// significand shifted right, ties to even. Every NaN -> 0x7E00.
inline std::uint16_t round_f16(float value) noexcept {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return 0x7E00;
  if (magnitude >= 0x477FF000u) return sign | 0x7C00u;        // 65520.0f and above: infinity
  if (magnitude >= 0x38800000u) {                             // 2^-14: normal
    const std::uint32_t rebiased = magnitude - (112u << 23);  // 112 = 127 - 15
    return sign | static_cast<std::uint16_t>((rebiased + 0xFFFu + ((rebiased >> 13) & 1u)) >> 13);
  }
  const std::uint32_t exponent = magnitude >> 23;
  if (exponent == 0) return sign;  // a float32 subnormal is below 2^-126, far under half of 2^-24
  const std::uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;
  const std::uint32_t shift = 126 - exponent;  // value * 2^24 = significand * 2^-shift; shift >= 14
  if (shift >= 25) return sign;                // below half of 2^-24
  std::uint32_t count = significand >> shift;
  const std::uint32_t rest = significand & ((1u << shift) - 1);
  const std::uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (count & 1u) != 0)) ++count;  // 0x400 is 2^-14, correctly
  return sign | static_cast<std::uint16_t>(count);
}

}  // namespace shardwise::transform::detail
