#pragma once
// The 16-bit floats of the dequantisation kernels (dequantize_int.hpp, fp8_scales.hpp): what a
// float32 result is written as, and the exact widening of every scale dtype to float32. One rule
// for every conversion (docs/transforms.md, "Dequantising a release"): the float32 product,
// rounded once to the output dtype, to nearest even; a NaN becomes one canonical pattern.

#include <cstddef>
#include <cstdint>

#include <shardwise/safetensors/dtype.hpp>
#include <shardwise/transform/kernels.hpp>

namespace shardwise::transform {

// The output dtype of a dequantisation: BF16 (a NaN written as `bf16_nan`, canonical 0x7FC0 by
// default) or F16 (a NaN written as 0x7E00).
struct OutputFormat {
  st::DType dtype = st::DType::BF16;
  Bf16Nan bf16_nan = Bf16Nan::canonical;
};

// float32 -> F16 bits: round to nearest, ties to even, gradual underflow (F16 subnormals, then
// +-0), |x| >= 65520 -> +-infinity; every NaN -> 0x7E00.
std::uint16_t f32_to_f16(float value) noexcept;
// F16 / BF16 bits -> float32, exact (NaN payloads kept).
float f16_to_f32(std::uint16_t bits) noexcept;
float bf16_to_f32(std::uint16_t bits) noexcept;

// A float32 rounded to `format` (f32_to_bf16 with its NaN bits, or f32_to_f16).
std::uint16_t round_to_output(float value, const OutputFormat& format) noexcept;

// Element `index` of little-endian scales of dtype F32, BF16, F16 or F8_E8M0, as an exact float32.
// The dtype must be one of the four (checked by the kernels before any call).
float scale_to_f32(const std::byte* scales, st::DType dtype, std::uint64_t index) noexcept;
bool is_scale_dtype(st::DType dtype) noexcept;

}  // namespace shardwise::transform
