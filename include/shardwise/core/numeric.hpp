#pragma once
// Element conversions the engine performs while copying, bit-exact with PyTorch's `.to(bfloat16)`.

#include <cstddef>
#include <cstdint>

namespace shardwise {

// IEEE fp16 bits -> bf16 bits: round to nearest even; every NaN becomes 0x7FC0 (PyTorch's scalar
// c10::BFloat16, which its CPU cast uses for fp16 input); infinities and signed zeros keep their sign.
std::uint16_t fp16_to_bf16(std::uint16_t half) noexcept;
// IEEE fp32 bits -> bf16 bits, same rounding; every NaN becomes 0xFFFF (PyTorch's vectorised x86 CPU
// cast, which it uses for fp32 input).
std::uint16_t fp32_to_bf16(std::uint32_t single) noexcept;

// Bulk forms over little-endian byte buffers: `count` elements; src and dst may not overlap.
void convert_f16_to_bf16(const std::byte* src, std::byte* dst, std::size_t count) noexcept;
void convert_f32_to_bf16(const std::byte* src, std::byte* dst, std::size_t count) noexcept;

}  // namespace shardwise
