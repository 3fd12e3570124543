#pragma once
// Which instruction set the transform kernels run on. Each kernel has portable code and, on x86-64,
// an AVX2 version chosen at run time when the CPU has it; both give the same bytes (the tests run
// each kernel both ways on the same inputs). The public functions of kernels.hpp use best_isa().

#include <cstdint>
#include <span>

#include <shardwise/transform/dequantize_int.hpp>
#include <shardwise/transform/fp8_scales.hpp>
#include <shardwise/transform/kernels.hpp>

namespace shardwise::transform {

enum class Isa { portable, avx2 };

// The fastest instruction set this CPU runs, fixed for the process.
Isa best_isa() noexcept;
// Whether this CPU runs `isa` (portable: always).
bool isa_available(Isa isa) noexcept;

// The kernels of kernels.hpp with the instruction set chosen by the caller (who checked that it is
// available).
void dequantize_to_bf16(const BlockScaledBand& band, Bf16Nan nan, std::span<std::byte> out, Isa isa);
void requantize_fp4_to_fp8(std::span<const std::byte> weight, std::span<const std::byte> scale,
                           std::uint64_t rows, std::uint64_t cols, std::span<std::byte> out_weight,
                           std::span<std::byte> out_scale, Isa isa);
// dequantize_fp8 (fp8_scales.hpp) likewise (AVX2 for BF16 output; F16 output is portable code).
void dequantize_fp8(const Fp8Band& band, const OutputFormat& format, std::span<std::byte> out, Isa isa);
// dequantize_int (dequantize_int.hpp) likewise (AVX2 for BF16 output where the groups come in runs
// of 16 input columns or more; the rest is portable code).
void dequantize_int(const IntQuantBand& band, const OutputFormat& format, std::span<std::byte> out, Isa isa);

namespace avx2 {
// `count` codes -> BF16 of e4m3(code) x scale, the float32 product rounded once, NaN -> nan_bits.
void dequantize_run(const std::uint8_t* codes, std::byte* out, std::uint64_t count, float scale,
                    std::uint16_t nan_bits) noexcept;
// `count` integer codes of one group -> BF16 of f32(code - zero) x scale, rounded once, NaN -> nan_bits.
void dequantize_int_run(const std::uint8_t* codes, std::byte* out, std::uint64_t count, std::int32_t zero,
                        float scale, std::uint16_t nan_bits) noexcept;
// One row of `groups` groups of 16 bytes (32 FP4 codes) -> 32 E4M3 codes each, through the
// 16-entry code table of each group: tables + 16 * table_index[g].
void expand_fp4(const std::uint8_t* in, std::uint8_t* out, std::uint64_t groups,
                const std::uint8_t* table_index, const std::uint8_t* tables) noexcept;
}  // namespace avx2

}  // namespace shardwise::transform
