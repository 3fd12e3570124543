#include <shardwise/transform/float16.hpp>

#include <bit>
#include <cstring>

#include "transform/rounding.hpp"

namespace shardwise::transform {

std::uint16_t f32_to_f16(float value) noexcept { return detail::round_f16(value); }

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
