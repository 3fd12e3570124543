#pragma once
// Numeric transforms as pure functions from input bytes to output bytes: no I/O, no threads, no
// tensor names. The engine calls them on bands of whole blocks of rows (see each function); which
// tensor gets which transform is the rules' business. Bit-exact with the reference converters
// (docs/transforms.md says which reference each follows and why).
//
// Conventions: tensors are row-major [rows, cols]; multi-byte values are little-endian; one-byte
// codes are E4M3 (fn: no infinities, 0x7F/0xFF NaN), E8M0 (unsigned exponent, 0xFF NaN) or I8/U8;
// FP4 is E2M1, two codes per byte, the even column in the low nibble.

#include <cstddef>
#include <cstdint>
#include <span>

#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::transform {

// Scalar conversions (bits in, bits out), as PyTorch's CPU code computes them.
float e4m3_to_f32(std::uint8_t code) noexcept;    // exact; 0x7F/0xFF -> NaN with the sign
float e8m0_to_f32(std::uint8_t code) noexcept;    // 2^(code-127); 0x00 -> 2^-127, 0xFF -> NaN
float e2m1_to_f32(std::uint8_t nibble) noexcept;  // low 4 bits; code 8 (-0) -> +0.0
std::uint8_t f32_to_e4m3(float value) noexcept;   // RNE, no saturation: |x| >= 480 -> NaN
std::uint8_t f32_to_e8m0(float value) noexcept;   // exponent rounded up iff mantissa >= 1.5
// Round to nearest even; a NaN becomes `nan_bits` (see Bf16Nan).
std::uint16_t f32_to_bf16(float value, std::uint16_t nan_bits) noexcept;

// What a float32 NaN becomes in BF16, by reference: PyTorch's vectorised x86 CPU cast writes
// 0xFFFF, its scalar c10 code 0x7FC0, triton's store (fp8_cast_bf16's GPU kernel) 0x7FFF.
enum class Bf16Nan : std::uint16_t { torch_cpu = 0xFFFF, canonical = 0x7FC0, triton = 0x7FFF };

// A block-scaled weight: `weight` is [rows, cols] one-byte E4M3 codes; `scale` holds one value per
// block_rows x block_cols block, [ceil(rows/block_rows), scale_cols] with scale_cols >=
// ceil(cols/block_cols), of dtype F8_E8M0 or F32. The band given starts on a block-row boundary
// (rows need not be a multiple of block_rows only for the last band). `out` is [rows, cols] BF16:
// y = bf16(f32(w) * f32(s)) with the float32 product rounded once.
struct BlockScaledBand {
  std::span<const std::byte> weight;
  std::span<const std::byte> scale;
  st::DType scale_dtype = st::DType::F8_E8M0;
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
  std::uint64_t scale_cols = 0;
  std::uint64_t block_rows = 128;
  std::uint64_t block_cols = 128;
};
void dequantize_to_bf16(const BlockScaledBand& band, Bf16Nan nan, std::span<std::byte> out);

// FP4 with one E8M0 scale per 1 x 32 -> E4M3 with one E8M0 scale per 128 x 128, as DeepSeek-V4's
// convert.py (cast_e2m1fn_to_e4m3fn) computes it. `weight` is [rows, cols/2] bytes, `scale` is
// [rows, cols/32] E8M0; rows and cols multiples of 128. Writes `out_weight` [rows, cols] E4M3 and
// `out_scale` [rows/128, cols/128] E8M0.
void requantize_fp4_to_fp8(std::span<const std::byte> weight, std::span<const std::byte> scale,
                           std::uint64_t rows, std::uint64_t cols, std::span<std::byte> out_weight,
                           std::span<std::byte> out_scale);

// The `out_scale` of requantize_fp4_to_fp8 alone, from the per-32 `scale` [rows, cols/32] (rows and
// cols multiples of 128): the new scale of a block depends on the block's old scales only.
void requantize_fp4_scale(std::span<const std::byte> scale, std::uint64_t rows, std::uint64_t cols,
                          std::span<std::byte> out_scale);

}  // namespace shardwise::transform
