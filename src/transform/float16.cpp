#include <shardwise/transform/float16.hpp>

#include <bit>
#include <cstring>

namespace shardwise::transform {

namespace {

constexpr std::uint16_t kF16NaN = 0x7E00;
constexpr std::uint32_t kF16Overflow = 0x477FF000u;   // 65520.0f: half-way from 65504 to 2^16
constexpr std::uint32_t kF16MinNormal = 0x38800000u;  // 2^-14

}  // namespace

// Normal results: the float's exponent rebiased (127 -> 15) and its mantissa rounded at bit 13 by
// adding 0xFFF plus the lowest kept bit (a carry bumps the exponent, 65504 stays the largest below
// the overflow bound). Below 2^-14 the result is an integer count of 2^-24, rounded from the
// significand shifted right, ties to even.
std::uint16_t f32_to_f16(float value) noexcept {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return kF16NaN;
  if (magnitude >= kF16Overflow) return sign | 0x7C00u;
  if (magnitude >= kF16MinNormal) {
    const std::uint32_t rebiased = magnitude - (112u << 23);  // 112 = 127 - 15
    return sign | static_cast<std::uint16_t>((rebiased + 0xFFFu + ((rebiased >> 13) & 1u)) >> 13);
  }
  const std::uint32_t exponent = magnitude >> 23;
  if (exponent == 0) return sign;  // a float32 subnormal is below 2^-126, far under half of 2^-24
  const std::uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;
  const std::uint32_t shift = 126 - exponent;  // value * 2^24 = significand * 2^-shift; shift >= 14
  if (shift >= 25) return sign;                // at most half of 2^-24 (a tie to the even 0)
  std::uint32_t count = significand >> shift;
  const std::uint32_t rest = significand & ((1u << shift) - 1);
  const std::uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (count & 1u) != 0)) ++count;  // 0x400 is 2^-14, correctly
  return sign | static_cast<std::uint16_t>(count);
}

float f16_to_f32(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
  const std::uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa x 2^-24, exact in float32 (an integer below 2^10 times a power of 2).
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return sign != 0 ? -magnitude : magnitude;
}

float bf16_to_f32(std::uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

std::uint16_t round_to_output(float value, const OutputFormat& format) noexcept {
  return format.dtype == st::DType::F16 ? f32_to_f16(value)
                                        : f32_to_bf16(value, static_cast<std::uint16_t>(format.bf16_nan));
}

bool is_scale_dtype(st::DType dtype) noexcept {
  return dtype == st::DType::F32 || dtype == st::DType::BF16 || dtype == st::DType::F16 ||
         dtype == st::DType::F8_E8M0;
}

float scale_to_f32(const std::byte* scales, st::DType dtype, std::uint64_t index) noexcept {
  switch (dtype) {
    case st::DType::F8_E8M0:
      return e8m0_to_f32(std::to_integer<std::uint8_t>(scales[index]));
    case st::DType::F32: {
      float value;
      std::memcpy(&value, scales + 4 * index, 4);
      return value;
    }
    default: {
      std::uint16_t half;
      std::memcpy(&half, scales + 2 * index, 2);
      return dtype == st::DType::F16 ? f16_to_f32(half) : bf16_to_f32(half);
    }
  }
}

}  // namespace shardwise::transform
