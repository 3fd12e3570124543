#pragma once
// Independent expectations for the transform tests: each format's values written from its
// definition (ldexp, exact comparisons in double and long double), never from the bit tricks of
// PyTorch's code that src/transform transcribes. Where PyTorch departs from plain rounding (no
// saturation to 448, e8m0 of subnormals, the NaN bits) the model says so and states the rule.

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace shardwise::test::exact {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// E4M3 (fn): 1 sign, 4 exponent (bias 7), 3 mantissa bits; exponent 0 subnormal (m * 2^-9);
// S.1111.111 is NaN; no infinities.
inline float e4m3_value(std::uint8_t code) {
  const int exponent = (code >> 3) & 0xF, mantissa = code & 7;
  const float sign = (code & 0x80) != 0 ? -1.0f : 1.0f;
  if (exponent == 15 && mantissa == 7) return std::copysign(kNaN, sign);
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);
  return sign * std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
}

// E8M0: 2^(code - 127); 0xFF is NaN. Code 0 is 2^-127 (a float32 subnormal).
inline float e8m0_value(std::uint8_t code) {
  if (code == 0xFF) return kNaN;
  return std::ldexp(1.0f, static_cast<int>(code) - 127);
}

// E2M1: 1 sign, 2 exponent (bias 1), 1 mantissa; DeepSeek's table decodes -0 (code 8) to +0.
inline float e2m1_value(std::uint8_t nibble) {
  const int exponent = (nibble >> 1) & 3, mantissa = nibble & 1;
  const float magnitude = exponent == 0
                              ? 0.5f * static_cast<float>(mantissa)
                              : std::ldexp(1.0f + 0.5f * static_cast<float>(mantissa), exponent - 1);
  return (nibble & 8) != 0 && magnitude != 0.0f ? -magnitude : magnitude;
}

// Round to the E4M3 grid, nearest, ties to the even code, with the grid extended by 480 at code
// 0x7F: PyTorch does not saturate, so [464, 480) rounds up to 0x7F (the NaN code) except the tie
// 464 (to even 0x7E = 448), and everything from 480 on, infinities and NaN, is 0x7F. Sign kept
// (also on NaN and on values that round to 0).
inline std::uint8_t round_to_e4m3(float value) {
  const std::uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const double magnitude = std::fabs(static_cast<double>(value));
  if (std::isnan(value) || magnitude >= 480.0) return 0x7F | sign;
  const auto grid = [](unsigned code) {
    return code == 0x7F ? 480.0 : static_cast<double>(e4m3_value(static_cast<std::uint8_t>(code)));
  };
  unsigned low = 0;
  while (low < 0x7F && grid(low + 1) <= magnitude) ++low;
  if (grid(low) == magnitude) return static_cast<std::uint8_t>(low | sign);
  const double middle = (grid(low) + grid(low + 1)) / 2;  // exact: both have few significant bits
  unsigned code = magnitude < middle ? low : magnitude > middle ? low + 1 : (low % 2 == 0 ? low : low + 1);
  return static_cast<std::uint8_t>(code | sign);
}

// E8M0 of |x| as PyTorch rounds it: a normal x = 1.f * 2^e gives e + 127, plus one when 1.f >= 1.5
// (the exponent rounded to nearest in the mantissa's linear terms, ties up); a subnormal gives 1
// above 2^-127 and 0 up to it; infinities, NaN and results past 254 give 0xFF.
inline std::uint8_t round_to_e8m0(float value) {
  const double magnitude = std::fabs(static_cast<double>(value));
  if (!std::isfinite(value)) return 0xFF;
  if (magnitude < std::ldexp(1.0, -126)) return magnitude > std::ldexp(1.0, -127) ? 1 : 0;
  int exponent = 0;
  const double fraction = std::frexp(magnitude, &exponent);  // magnitude = fraction * 2^exponent, [0.5, 1)
  const int code = exponent - 1 + 127 + (fraction >= 0.75 ? 1 : 0);
  return code > 254 ? 0xFF : static_cast<std::uint8_t>(code);
}

// BF16 of a float: nearest of the two bf16 values around it (truncation and the next one up),
// ties to the even one, compared exactly in double; carries reach infinity; NaN -> `nan_bits`.
inline std::uint16_t round_to_bf16(float value, std::uint16_t nan_bits) {
  if (std::isnan(value)) return nan_bits;
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto truncated = static_cast<std::uint16_t>(bits >> 16);
  if ((bits & 0xFFFF) == 0) return truncated;
  const auto widen = [](std::uint16_t b) {
    return static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16));
  };
  const auto next = static_cast<std::uint16_t>(truncated + 1);  // away from zero; may be infinity
  const bool next_is_infinite = (next & 0x7FFF) == 0x7F80;      // then the midpoint is (max + 2^128) / 2
  const double low = std::fabs(widen(truncated));
  const double high = next_is_infinite ? std::ldexp(1.0, 128) : std::fabs(widen(next));
  const double middle = (low + high) / 2, magnitude = std::fabs(static_cast<double>(value));
  if (magnitude < middle) return truncated;
  if (magnitude > middle) return next;
  return (truncated & 1) == 0 ? truncated : next;
}

// The float32 product of two floats, rounded once, from the exact product in long double (64-bit
// significand: exact for an e4m3 value times any float).
inline float product(float a, float b) {
  return static_cast<float>(static_cast<long double>(a) * static_cast<long double>(b));
}

// F16 bits from the definition: 1 sign, 5 exponent (bias 15), 10 mantissa; exponent 0 subnormal
// (m * 2^-24), exponent 31 infinity (m = 0) or NaN.
inline float f16_value(std::uint16_t bits) {
  const int exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
  const float sign = (bits & 0x8000) != 0 ? -1.0f : 1.0f;
  if (exponent == 31)
    return mantissa == 0 ? sign * std::numeric_limits<float>::infinity() : std::copysign(kNaN, sign);
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);
  return sign * std::ldexp(1.0f + static_cast<float>(mantissa) / 1024.0f, exponent - 15);
}

// BF16 bits from the definition: 1 sign, 8 exponent (bias 127), 7 mantissa.
inline float bf16_value(std::uint16_t bits) {
  const int exponent = (bits >> 7) & 0xFF, mantissa = bits & 0x7F;
  const float sign = (bits & 0x8000) != 0 ? -1.0f : 1.0f;
  if (exponent == 255)
    return mantissa == 0 ? sign * std::numeric_limits<float>::infinity() : std::copysign(kNaN, sign);
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -133);
  return sign * std::ldexp(1.0f + static_cast<float>(mantissa) / 128.0f, exponent - 127);
}

// F16 of a float: the nearest of the finite F16 values (searched over the positive codes, compared
// exactly in double), ties to the even code; from 65520 on (half-way to 2^16) infinity; NaN ->
// 0x7E00; the sign kept (also on values that round to 0).
inline std::uint16_t round_to_f16(float value) {
  if (std::isnan(value)) return 0x7E00;
  const std::uint16_t sign = std::signbit(value) ? 0x8000 : 0x0000;
  const double magnitude = std::fabs(static_cast<double>(value));
  const auto grid = [](unsigned code) {  // 0x7C00: 2^16, where rounding goes to infinity
    return code == 0x7C00 ? 65536.0 : static_cast<double>(f16_value(static_cast<std::uint16_t>(code)));
  };
  if (magnitude >= 65520.0) return sign | 0x7C00;
  unsigned low = 0, high = 0x7C00;  // grid(low) <= magnitude < grid(high)
  while (high - low > 1) {
    const unsigned middle_code = (low + high) / 2;
    (grid(middle_code) <= magnitude ? low : high) = middle_code;
  }
  if (grid(low) == magnitude) return static_cast<std::uint16_t>(sign | low);
  const double middle = (grid(low) + grid(high)) / 2;
  const unsigned code = magnitude < middle ? low : magnitude > middle ? high : (low % 2 == 0 ? low : high);
  return static_cast<std::uint16_t>(sign | code);
}

}  // namespace shardwise::test::exact
