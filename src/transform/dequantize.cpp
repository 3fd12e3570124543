#include <shardwise/core/error.hpp>
#include <shardwise/transform/kernels.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <shardwise/transform/isa.hpp>
#include "transform/formats.hpp"

// y = bf16(f32(w) * f32(s)): within one block every weight code meets the same scale, so the
// block's 256 possible answers are computed once (with that very product and rounding) and each
// element becomes one table lookup, without branches. Blocks smaller than the table are computed
// element by element instead, with the same arithmetic. With AVX2, every element is computed, eight
// at a time (decode, multiply, round: the same arithmetic again), about 4x faster than the lookups.

namespace shardwise::transform {

namespace {

using Lut = std::array<std::uint16_t, 256>;

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what) {
  std::uint64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) {
    throw Error(ErrorKind::input,
                fmt::format("dequantize_to_bf16: {} overflows 64 bits ({} x {})", what, a, b));
  }
  return product;
}

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// Checks the band's numbers against its spans; returns the number of block-rows.
std::uint64_t check_band(const BlockScaledBand& band, std::size_t out_bytes) {
  const auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::input,
                fmt::format("dequantize_to_bf16: {} (rows {}, cols {}, blocks {}x{}, scale_cols {})", what,
                            band.rows, band.cols, band.block_rows, band.block_cols, band.scale_cols));
  };
  if (band.block_rows == 0 || band.block_cols == 0) fail("a block dimension is 0");
  if (band.scale_dtype != st::DType::F8_E8M0 && band.scale_dtype != st::DType::F32) {
    fail(fmt::format("scale dtype {} is neither F8_E8M0 nor F32", st::dtype_name(band.scale_dtype)));
  }
  const std::uint64_t block_rows_in_band = ceil_div(band.rows, band.block_rows);
  if (band.scale_cols < ceil_div(band.cols, band.block_cols)) {
    fail(fmt::format("scale_cols {} < {} blocks across", band.scale_cols,
                     ceil_div(band.cols, band.block_cols)));
  }
  const std::uint64_t elements = checked_mul(band.rows, band.cols, "rows x cols");
  const std::uint64_t scale_bytes =
      checked_mul(checked_mul(block_rows_in_band, band.scale_cols, "scale count"),
                  band.scale_dtype == st::DType::F32 ? 4 : 1, "scale bytes");
  if (band.weight.size() != elements)
    fail(fmt::format("weight holds {} bytes, not {}", band.weight.size(), elements));
  if (band.scale.size() != scale_bytes) {
    fail(fmt::format("scale holds {} bytes, not {}", band.scale.size(), scale_bytes));
  }
  if (out_bytes / 2 != elements || out_bytes % 2 != 0) {
    fail(fmt::format("output holds {} bytes, not {}", out_bytes, checked_mul(elements, 2, "output bytes")));
  }
  return block_rows_in_band;
}

float scale_at(const BlockScaledBand& band, std::uint64_t index) noexcept {
  if (band.scale_dtype == st::DType::F8_E8M0)
    return e8m0_to_f32(std::to_integer<std::uint8_t>(band.scale[index]));
  float value;
  std::memcpy(&value, band.scale.data() + 4 * index, 4);
  return value;
}

void fill_lut(float scale, std::uint16_t nan_bits, Lut& lut) noexcept {
  const std::array<float, 256>& decoded = e4m3_table();
  for (std::size_t code = 0; code < 256; ++code) lut[code] = f32_to_bf16(decoded[code] * scale, nan_bits);
}

// One block: `height` rows of `width` codes, `stride` bytes (elements) apart.
void dequantize_block(const std::byte* weight, std::byte* out, std::uint64_t height, std::uint64_t width,
                      std::uint64_t stride, const Lut& lut) noexcept {
  for (std::uint64_t r = 0; r < height; ++r) {
    const auto* in_row = reinterpret_cast<const std::uint8_t*>(weight + r * stride);
    std::byte* out_row = out + 2 * r * stride;
    for (std::uint64_t c = 0; c < width; ++c) {
      const std::uint16_t value = lut[in_row[c]];
      std::memcpy(out_row + 2 * c, &value, 2);
    }
  }
}

void dequantize_small_block(const std::byte* weight, std::byte* out, std::uint64_t height,
                            std::uint64_t width, std::uint64_t stride, float scale,
                            std::uint16_t nan_bits) noexcept {
  const std::array<float, 256>& decoded = e4m3_table();
  for (std::uint64_t r = 0; r < height; ++r) {
    const auto* in_row = reinterpret_cast<const std::uint8_t*>(weight + r * stride);
    std::byte* out_row = out + 2 * r * stride;
    for (std::uint64_t c = 0; c < width; ++c) {
      const std::uint16_t value = f32_to_bf16(decoded[in_row[c]] * scale, nan_bits);
      std::memcpy(out_row + 2 * c, &value, 2);
    }
  }
}

// AVX2: row by row (contiguous input and output), each row's runs of block_cols codes with their
// block's scale.
void dequantize_by_rows(const BlockScaledBand& band, std::uint64_t block_row_count, std::uint16_t nan_bits,
                        std::span<std::byte> out) {
  const std::uint64_t block_col_count = ceil_div(band.cols, band.block_cols);
  std::vector<float> scales(block_col_count);
  const auto* codes = reinterpret_cast<const std::uint8_t*>(band.weight.data());
  for (std::uint64_t br = 0; br < block_row_count; ++br) {
    for (std::uint64_t bc = 0; bc < block_col_count; ++bc)
      scales[bc] = scale_at(band, br * band.scale_cols + bc);
    const std::uint64_t row_end = std::min(band.rows, (br + 1) * band.block_rows);
    for (std::uint64_t r = br * band.block_rows; r < row_end; ++r) {
      for (std::uint64_t bc = 0; bc < block_col_count; ++bc) {
        const std::uint64_t col0 = bc * band.block_cols;
        const std::uint64_t width = std::min(band.block_cols, band.cols - col0);
        avx2::dequantize_run(codes + r * band.cols + col0, out.data() + 2 * (r * band.cols + col0), width,
                             scales[bc], nan_bits);
      }
    }
  }
}

}  // namespace

void dequantize_to_bf16(const BlockScaledBand& band, Bf16Nan nan, std::span<std::byte> out) {
  dequantize_to_bf16(band, nan, out, best_isa());
}

void dequantize_to_bf16(const BlockScaledBand& band, Bf16Nan nan, std::span<std::byte> out, Isa isa) {
  const std::uint64_t block_row_count = check_band(band, out.size());
  const auto nan_bits = static_cast<std::uint16_t>(nan);
  const std::uint64_t block_col_count = ceil_div(band.cols, band.block_cols);
  // Blocks are clipped to the tensor, so their area is at most rows x cols (checked above).
  if (isa == Isa::avx2) {
    dequantize_by_rows(band, block_row_count, nan_bits, out);
    return;
  }
  const bool small_blocks = std::min(band.block_rows, band.rows) * std::min(band.block_cols, band.cols) < 256;
  Lut lut;
  for (std::uint64_t br = 0; br < block_row_count; ++br) {
    const std::uint64_t row0 = br * band.block_rows;
    const std::uint64_t height = std::min(band.block_rows, band.rows - row0);
    for (std::uint64_t bc = 0; bc < block_col_count; ++bc) {
      const std::uint64_t col0 = bc * band.block_cols;
      const std::uint64_t width = std::min(band.block_cols, band.cols - col0);
      const float scale = scale_at(band, br * band.scale_cols + bc);
      const std::byte* weight = band.weight.data() + row0 * band.cols + col0;
      std::byte* target = out.data() + 2 * (row0 * band.cols + col0);
      if (small_blocks) {
        dequantize_small_block(weight, target, height, width, band.cols, scale, nan_bits);
      } else {
        fill_lut(scale, nan_bits, lut);
        dequantize_block(weight, target, height, width, band.cols, lut);
      }
    }
  }
}

}  // namespace shardwise::transform
