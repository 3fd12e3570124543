#pragma once
// FP8 (E4M3) weights dequantised to BF16 or F16, for every scale convention of the Hugging Face
// releases: block scales (DeepSeek-V3's `weight_scale_inv`, Qwen3-FP8's, compressed-tensors'
// "block" strategy) in F32, BF16, F16 or E8M0 of any block shape, and compressed-tensors'
// per-channel [out, 1] and per-tensor [1] / [] `weight_scale`. Pure functions on byte spans.
//
//     W[r, c] = out( f32(e4m3(w[r, c])) x f32(S(r, c)) )     one float32 multiply, then rounded
//     S(r, c) = scale[r / block_rows, c / block_cols]         once to the output dtype
//
// Per-channel and per-tensor scales are the same formula with blocks as wide (and, per-tensor, as
// tall) as the weight: ScaleGrid::per_channel(), ScaleGrid::per_tensor(). For F16, BF16 and E8M0
// scales the float32 product is the exact product; for F32 scales it is rounded to float32 first,
// as every upstream computes it (docs/transforms.md). dequantize_to_bf16 (kernels.hpp) is the same
// arithmetic for DeepSeek's own converters with their NaN bits; this one adds the scale dtypes,
// F16 output and per-row bands.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include <shardwise/safetensors/dtype.hpp>
#include <shardwise/transform/float16.hpp>
#include <shardwise/transform/index_range.hpp>

namespace shardwise::transform {

// Which scale an element uses: scale[r / block_rows, c / block_cols].
struct ScaleGrid {
  static constexpr std::uint64_t kWhole = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t block_rows = 128;
  std::uint64_t block_cols = 128;

  static constexpr ScaleGrid blocks(std::uint64_t rows, std::uint64_t cols) { return {rows, cols}; }
  static constexpr ScaleGrid per_channel() { return {1, kWhole}; }      // scale [out, 1]
  static constexpr ScaleGrid per_tensor() { return {kWhole, kWhole}; }  // scale [1] or []
};

// A band of whole rows of an [out, in] E4M3 weight: rows [first_row, first_row + rows), any first
// row (no alignment to the blocks). `scale` holds the scale rows these rows use, from
// first_row / block_rows to (first_row + rows - 1) / block_rows (fp8_band_scale_rows), each
// `scale_cols` values long (the stored row length, >= ceil(cols / block_cols); 1 per channel or
// tensor). So the engine streams a weight in bounded memory: a band's output is rows x cols x 2
// bytes and its scales a few rows.
struct Fp8Band {
  std::span<const std::byte> weight;  // rows x cols E4M3 codes
  std::span<const std::byte> scale;   // see above; dtype F32, BF16, F16 or F8_E8M0, little-endian
  st::DType scale_dtype = st::DType::F32;
  ScaleGrid grid;
  std::uint64_t first_row = 0;
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
  std::uint64_t scale_cols = 0;
};

// The scale rows [begin, end) a band of `rows` rows from `first_row` reads (rows > 0).
IndexRange fp8_band_scale_rows(const ScaleGrid& grid, std::uint64_t first_row, std::uint64_t rows) noexcept;

// Writes `out`, rows x cols values of `format` (2 bytes each, little-endian). Throws Error(input)
// naming the numbers when the spans do not hold what the band says, a block dimension is 0 or the
// dtypes are not ones handled. NaN codes, NaN scales and 0 x inf give NaN; +-inf scales times
// non-zero codes +-inf; a float32-subnormal scale is used as is (no flush to zero).
void dequantize_fp8(const Fp8Band& band, const OutputFormat& format, std::span<std::byte> out);

}  // namespace shardwise::transform
