#include <shardwise/core/error.hpp>
#include <shardwise/transform/kernels.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include <shardwise/transform/isa.hpp>
#include "transform/formats.hpp"

// DeepSeek-V4 convert.py, cast_e2m1fn_to_e4m3fn, per 128 x 128 block of the output:
//   s      = f32(scale) of the block's 128 rows x 4 groups of 32 columns
//   smax   = amax(s) / 64                      (float32; a NaN scale makes it NaN)
//   offset = s / smax                          (float32 division, one per row and group)
//   out    = e4m3(f32(FP4[code] * offset))     new scale = e8m0(smax)
// Within a block, the answer for a code depends only on its group's offset, so each offset gets a
// table of answers built with exactly that arithmetic (see OffsetTables). amax of decoded E8M0 values is the
// decoding of the largest code (decoding is monotonic, 0xFF the NaN), so the maximum is taken on
// the bytes.

namespace shardwise::transform {

namespace {

constexpr std::uint64_t kBlock = 128;  // output block, both ways
constexpr std::uint64_t kGroup = 32;   // input scale group along a row
constexpr float kMaxOffset = 64.0f;    // 2^MAX_OFFSET_BITS: 6 * 64 = 384 < 448
constexpr std::uint8_t kE4m3Nan = 0x7F;
constexpr std::uint8_t kE8m0Nan = 0xFF;

// The answers for each input byte (two FP4 codes: the even column's E4M3 code in the low byte, the
// odd column's in the high byte, as the output lays them out), per offset. Below the NaN code every
// E8M0 code a decodes exactly to 2^(a-127) (0x00 included), smax exactly to 2^(m-133) for the
// block's largest code m, so offset = s / smax = 2^(6-d) with d = m - a, rounded (to 0 below 2^-149)
// by the division itself: the answer depends on d alone. Each table is built on first use with the
// reference's own arithmetic on the scale and smax met there, and serves the whole call. Index
// kNanTable (d never reaches it: d <= 254) holds a NaN block's answer, 0x7F for every code.
constexpr std::uint8_t kNanTable = 255;

struct OffsetTables {
  std::array<std::array<std::uint16_t, 256>, 256> pairs;  // by d; 128 KiB, filled only where built
  std::array<std::uint8_t, 256 * 16> codes;               // from 16 * d: the E4M3 code of each FP4 code
  std::array<bool, 256> built{};

  OffsetTables() noexcept {  // the arrays stay uninitialised but for the NaN table
    pairs[kNanTable].fill(kE4m3Nan | kE4m3Nan << 8);
    std::fill_n(codes.begin() + 16 * kNanTable, 16, kE4m3Nan);
    built[kNanTable] = true;
  }

  // The index d of the tables for `scale_code` in a block whose largest code is `largest` (< 0xFF).
  std::uint8_t get(std::uint8_t scale_code, std::uint8_t largest, float smax) noexcept {
    const auto d = static_cast<std::uint8_t>(largest - scale_code);
    if (!built[d]) {
      const float offset = e8m0_to_f32(scale_code) / smax;
      const std::array<float, 16>& values = e2m1_table();
      std::uint8_t* code_of = codes.data() + 16 * std::size_t{d};
      for (std::size_t n = 0; n < 16; ++n) code_of[n] = f32_to_e4m3(values[n] * offset);
      for (std::size_t byte = 0; byte < 256; ++byte) {
        pairs[d][byte] = static_cast<std::uint16_t>(code_of[byte & 0x0Fu] | code_of[byte >> 4] << 8);
      }
      built[d] = true;
    }
    return d;
  }
};

void check_shapes(std::size_t weight_bytes, std::size_t scale_bytes, std::uint64_t rows, std::uint64_t cols,
                  std::size_t out_weight_bytes, std::size_t out_scale_bytes) {
  const auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::input,
                fmt::format("requantize_fp4_to_fp8: {} (rows {}, cols {})", what, rows, cols));
  };
  if (rows % kBlock != 0 || cols % kBlock != 0) fail("rows and cols must be multiples of 128");
  std::uint64_t elements = 0;
  if (__builtin_mul_overflow(rows, cols, &elements)) fail("rows x cols overflows 64 bits");
  if (weight_bytes != elements / 2)
    fail(fmt::format("weight holds {} bytes, not {}", weight_bytes, elements / 2));
  if (scale_bytes != elements / kGroup) {
    fail(fmt::format("scale holds {} bytes, not {}", scale_bytes, elements / kGroup));
  }
  if (out_weight_bytes != elements) {
    fail(fmt::format("output weight holds {} bytes, not {}", out_weight_bytes, elements));
  }
  if (out_scale_bytes != elements / (kBlock * kBlock)) {
    fail(fmt::format("output scale holds {} bytes, not {}", out_scale_bytes, elements / (kBlock * kBlock)));
  }
}

// The largest scale code of block column `bi` over 128 rows of `groups_per_row` codes.
std::uint8_t largest_code(const std::uint8_t* scale, std::uint64_t groups_per_row,
                          std::uint64_t bi) noexcept {
  std::uint8_t largest = 0;
  for (std::uint64_t r = 0; r < kBlock; ++r) {
    const std::uint8_t* groups = scale + r * groups_per_row + bi * (kBlock / kGroup);
    for (std::uint64_t g = 0; g < kBlock / kGroup; ++g) largest = std::max(largest, groups[g]);
  }
  return largest;
}

// e8m0(smax) of a block whose largest scale code is `largest`.
std::byte new_scale(std::uint8_t largest) noexcept {
  return std::byte{f32_to_e8m0(e8m0_to_f32(largest) / kMaxOffset)};
}

}  // namespace

void requantize_fp4_scale(std::span<const std::byte> scale, std::uint64_t rows, std::uint64_t cols,
                          std::span<std::byte> out_scale) {
  const auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::input,
                fmt::format("requantize_fp4_scale: {} (rows {}, cols {})", what, rows, cols));
  };
  if (rows % kBlock != 0 || cols % kBlock != 0) fail("rows and cols must be multiples of 128");
  if (scale.size() != rows * (cols / kGroup))
    fail(fmt::format("scale holds {} bytes, not {}", scale.size(), rows * (cols / kGroup)));
  if (out_scale.size() != (rows / kBlock) * (cols / kBlock)) {
    fail(fmt::format("output scale holds {} bytes, not {}", out_scale.size(),
                     (rows / kBlock) * (cols / kBlock)));
  }
  const auto* scales = reinterpret_cast<const std::uint8_t*>(scale.data());
  const std::uint64_t groups_per_row = cols / kGroup;
  for (std::uint64_t bo = 0; bo < rows / kBlock; ++bo) {
    for (std::uint64_t bi = 0; bi < cols / kBlock; ++bi) {
      out_scale[bo * (cols / kBlock) + bi] =
          new_scale(largest_code(scales + bo * kBlock * groups_per_row, groups_per_row, bi));
    }
  }
}

void requantize_fp4_to_fp8(std::span<const std::byte> weight, std::span<const std::byte> scale,
                           std::uint64_t rows, std::uint64_t cols, std::span<std::byte> out_weight,
                           std::span<std::byte> out_scale) {
  requantize_fp4_to_fp8(weight, scale, rows, cols, out_weight, out_scale, best_isa());
}

void requantize_fp4_to_fp8(std::span<const std::byte> weight, std::span<const std::byte> scale,
                           std::uint64_t rows, std::uint64_t cols, std::span<std::byte> out_weight,
                           std::span<std::byte> out_scale, Isa isa) {
  check_shapes(weight.size(), scale.size(), rows, cols, out_weight.size(), out_scale.size());
  const auto* packed = reinterpret_cast<const std::uint8_t*>(weight.data());
  const auto* scales = reinterpret_cast<const std::uint8_t*>(scale.data());
  auto* codes_out = reinterpret_cast<std::uint8_t*>(out_weight.data());
  const std::uint64_t groups_per_row = cols / kGroup;
  const std::uint64_t blocks_across = cols / kBlock;
  constexpr std::uint64_t kGroupsAcross = kBlock / kGroup;
  const std::unique_ptr<OffsetTables> tables(new OffsetTables);
  // Per 128-row band, each group's table; then the band row by row (contiguous input and output).
  std::vector<std::uint8_t> table_of(kBlock * groups_per_row);
  for (std::uint64_t bo = 0; bo < rows / kBlock; ++bo) {
    const std::uint8_t* band_scales = scales + bo * kBlock * groups_per_row;
    for (std::uint64_t bi = 0; bi < blocks_across; ++bi) {
      const std::uint8_t largest = largest_code(band_scales, groups_per_row, bi);
      const float smax = e8m0_to_f32(largest) / kMaxOffset;
      out_scale[bo * blocks_across + bi] = new_scale(largest);
      for (std::uint64_t r = 0; r < kBlock; ++r) {
        const std::uint64_t first = r * groups_per_row + bi * kGroupsAcross;
        for (std::uint64_t g = first; g < first + kGroupsAcross; ++g) {
          // A NaN largest code: NaN offsets everywhere, every product a positive NaN.
          table_of[g] = largest == kE8m0Nan ? kNanTable : tables->get(band_scales[g], largest, smax);
        }
      }
    }
    for (std::uint64_t r = 0; r < kBlock; ++r) {
      const std::uint8_t* in = packed + (bo * kBlock + r) * (cols / 2);
      std::uint8_t* out = codes_out + (bo * kBlock + r) * cols;
      const std::uint8_t* row_tables = table_of.data() + r * groups_per_row;
      if (isa == Isa::avx2) {
        avx2::expand_fp4(in, out, groups_per_row, row_tables, tables->codes.data());
        continue;
      }
      for (std::uint64_t g = 0; g < groups_per_row; ++g) {
        const std::array<std::uint16_t, 256>& pairs = tables->pairs[row_tables[g]];
        for (std::uint64_t j = 0; j < kGroup / 2; ++j)
          std::memcpy(out + kGroup * g + 2 * j, &pairs[in[16 * g + j]], 2);
      }
    }
  }
}

}  // namespace shardwise::transform
