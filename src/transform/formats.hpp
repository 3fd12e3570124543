#pragma once
// The transform step's tables of one-byte and four-bit codes, shared by its kernels. Each entry is
// made by the scalar conversion of the same name (kernels.hpp), so table and function cannot differ.

#include <array>
#include <cstdint>

namespace shardwise::transform {

// e4m3_to_f32 of every code.
const std::array<float, 256>& e4m3_table() noexcept;
// e2m1_to_f32 of every nibble, as DeepSeek's FP4_TABLE: code 8 (-0) decodes to +0.0.
const std::array<float, 16>& e2m1_table() noexcept;

}  // namespace shardwise::transform
