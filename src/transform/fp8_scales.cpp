#include <shardwise/core/error.hpp>
#include <shardwise/transform/fp8_scales.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <shardwise/transform/isa.hpp>
#include "transform/formats.hpp"

// Within one block every code meets the same scale, so a block of at least kLutMinimum elements
// gets its 256 answers computed once (the very product and rounding) and each element is a table
// lookup; smaller pieces of blocks (per-channel scales on short rows, thin bands) are computed
// element by element with the same arithmetic. The tests run both. With AVX2 and BF16 output,
// every element is computed instead, eight at a time, row by row (avx2::dequantize_run, the same
// arithmetic: 1.7x the table's speed here); tests/transform/isa_test.cpp compares the two.

namespace shardwise::transform {

namespace {

constexpr std::uint64_t kLutMinimum = 512;

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept { return a / b + (a % b != 0 ? 1 : 0); }

// a * b, or UINT64_MAX when it does not fit (a block end past every row).
std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t product = 0;
  return __builtin_mul_overflow(a, b, &product) ? std::numeric_limits<std::uint64_t>::max() : product;
}

std::string grid_text(std::uint64_t extent) {
  return extent == ScaleGrid::kWhole ? std::string("all") : std::to_string(extent);
}

void check_band(const Fp8Band& band, const OutputFormat& format, std::size_t out_bytes) {
  const auto fail = [&](const std::string& what) {
    throw Error(
        ErrorKind::input,
        fmt::format("dequantize_fp8: {} (first row {}, rows {}, cols {}, blocks {}x{}, scale_cols {}, "
                    "scale dtype {})",
                    what, band.first_row, band.rows, band.cols, grid_text(band.grid.block_rows),
                    grid_text(band.grid.block_cols), band.scale_cols, st::dtype_name(band.scale_dtype)));
  };
  if (band.grid.block_rows == 0 || band.grid.block_cols == 0) fail("a block dimension is 0");
  if (!is_scale_dtype(band.scale_dtype)) fail("the scale dtype is not F32, BF16, F16 or F8_E8M0");
  if (format.dtype != st::DType::BF16 && format.dtype != st::DType::F16) {
    fail(fmt::format("output dtype {} is neither BF16 nor F16", st::dtype_name(format.dtype)));
  }
  std::uint64_t elements = 0, out_expected = 0;
  if (__builtin_mul_overflow(band.rows, band.cols, &elements) ||
      __builtin_mul_overflow(elements, 2, &out_expected)) {
    fail("rows x cols overflows 64 bits");
  }
  if (band.scale_cols < ceil_div(band.cols, band.grid.block_cols)) {
    fail(fmt::format("scale_cols {} < {} blocks across", band.scale_cols,
                     ceil_div(band.cols, band.grid.block_cols)));
  }
  if (band.weight.size() != elements)
    fail(fmt::format("weight holds {} bytes, not {}", band.weight.size(), elements));
  const IndexRange scale_rows =
      band.rows == 0 ? IndexRange{} : fp8_band_scale_rows(band.grid, band.first_row, band.rows);
  std::uint64_t scale_bytes = 0;
  if (__builtin_mul_overflow(scale_rows.end - scale_rows.begin, band.scale_cols, &scale_bytes) ||
      __builtin_mul_overflow(scale_bytes, st::dtype_bits(band.scale_dtype) / 8, &scale_bytes)) {
    fail("the scale's size overflows 64 bits");
  }
  if (band.scale.size() != scale_bytes) {
    fail(fmt::format("scale holds {} bytes, not {} (scale rows {}..{})", band.scale.size(), scale_bytes,
                     scale_rows.begin, scale_rows.end));
  }
  if (out_bytes != out_expected) fail(fmt::format("output holds {} bytes, not {}", out_bytes, out_expected));
}

void store(std::byte* out, std::uint16_t value) noexcept { std::memcpy(out, &value, 2); }

// `height` rows of `width` codes, `stride` elements apart, all with one scale.
void dequantize_block(const std::uint8_t* codes, std::byte* out, std::uint64_t height, std::uint64_t width,
                      std::uint64_t stride, float scale, const OutputFormat& format) noexcept {
  const std::array<float, 256>& decoded = e4m3_table();
  if (height * width < kLutMinimum) {
    for (std::uint64_t r = 0; r < height; ++r) {
      for (std::uint64_t c = 0; c < width; ++c) {
        store(out + 2 * (r * stride + c), round_to_output(decoded[codes[r * stride + c]] * scale, format));
      }
    }
    return;
  }
  std::array<std::uint16_t, 256> lut;
  for (std::size_t code = 0; code < 256; ++code) lut[code] = round_to_output(decoded[code] * scale, format);
  for (std::uint64_t r = 0; r < height; ++r) {
    const std::uint8_t* row = codes + r * stride;
    std::byte* out_row = out + 2 * r * stride;
    for (std::uint64_t c = 0; c < width; ++c) store(out_row + 2 * c, lut[row[c]]);
  }
}

}  // namespace

IndexRange fp8_band_scale_rows(const ScaleGrid& grid, std::uint64_t first_row, std::uint64_t rows) noexcept {
  return {first_row / grid.block_rows, (first_row + rows - 1) / grid.block_rows + 1};
}

void dequantize_fp8(const Fp8Band& band, const OutputFormat& format, std::span<std::byte> out) {
  dequantize_fp8(band, format, out, best_isa());
}

void dequantize_fp8(const Fp8Band& band, const OutputFormat& format, std::span<std::byte> out, Isa isa) {
  check_band(band, format, out.size());
  if (band.rows == 0 || band.cols == 0) return;
  const IndexRange scale_rows = fp8_band_scale_rows(band.grid, band.first_row, band.rows);
  const std::uint64_t block_col_count = ceil_div(band.cols, band.grid.block_cols);
  const auto* codes = reinterpret_cast<const std::uint8_t*>(band.weight.data());
  const std::uint64_t band_end = band.first_row + band.rows;
  // AVX2 (BF16 output): row by row, each row's runs of one block with their block's scale.
  const bool by_rows = isa == Isa::avx2 && format.dtype == st::DType::BF16;
  std::vector<float> scales(by_rows ? block_col_count : 0);
  for (std::uint64_t scale_row = scale_rows.begin; scale_row < scale_rows.end; ++scale_row) {
    // The band's rows under this scale row, relative to the band.
    const std::uint64_t row0 = std::max(band.first_row, scale_row * band.grid.block_rows) - band.first_row;
    const std::uint64_t row1 =
        std::min(band_end, saturating_mul(scale_row + 1, band.grid.block_rows)) - band.first_row;
    const auto scale_at = [&](std::uint64_t block_col) {
      return scale_to_f32(band.scale.data(), band.scale_dtype,
                          (scale_row - scale_rows.begin) * band.scale_cols + block_col);
    };
    if (by_rows) {
      for (std::uint64_t block_col = 0; block_col < block_col_count; ++block_col)
        scales[block_col] = scale_at(block_col);
      const auto nan_bits = static_cast<std::uint16_t>(format.bf16_nan);
      for (std::uint64_t r = row0; r < row1; ++r) {
        for (std::uint64_t block_col = 0; block_col < block_col_count; ++block_col) {
          const std::uint64_t col0 = block_col * band.grid.block_cols;
          const std::uint64_t first = r * band.cols + col0;
          avx2::dequantize_run(codes + first, out.data() + 2 * first,
                               std::min(band.grid.block_cols, band.cols - col0), scales[block_col], nan_bits);
        }
      }
      continue;
    }
    for (std::uint64_t block_col = 0; block_col < block_col_count; ++block_col) {
      const std::uint64_t col0 = block_col * band.grid.block_cols;
      const std::uint64_t width = std::min(band.grid.block_cols, band.cols - col0);
      const std::uint64_t first = row0 * band.cols + col0;
      dequantize_block(codes + first, out.data() + 2 * first, row1 - row0, width, band.cols,
                       scale_at(block_col), format);
    }
  }
}

}  // namespace shardwise::transform
