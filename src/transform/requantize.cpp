#include <shardwise/core/error.hpp>
#include <shardwise/transform/kernels.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "transform/formats.hpp"
#include "transform/isa.hpp"

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
// reference's own arithmetic on the scale and smax met there, and serves the whole call.
struct OffsetTables {
  std::array<std::array<std::uint16_t, 256>, 255> pairs;  // by d; 127.5 KiB, filled only where built
  std::array<std::array<std::uint8_t, 16>, 255> codes;    // by d: the E4M3 code of each FP4 code
  std::array<bool, 255> built{};

  // The index d of the tables for `scale_code` in a block whose largest code is `largest`.
  std::uint8_t get(std::uint8_t scale_code, std::uint8_t largest, float smax) noexcept {
    const auto d = static_cast<std::uint8_t>(largest - scale_code);
    if (!built[d]) {
      const float offset = e8m0_to_f32(scale_code) / smax;
      const std::array<float, 16>& values = e2m1_table();
      for (std::size_t n = 0; n < 16; ++n) codes[d][n] = f32_to_e4m3(values[n] * offset);
      for (std::size_t byte = 0; byte < 256; ++byte) {
        pairs[d][byte] = static_cast<std::uint16_t>(codes[d][byte & 0x0Fu] | codes[d][byte >> 4] << 8);
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
  const std::unique_ptr<OffsetTables> tables(new OffsetTables);          // default-initialised: no memset
  std::array<const std::uint8_t*, kBlock * kGroupsAcross> block_tables;  // AVX2: each group's codes
  for (std::uint64_t bo = 0; bo < rows / kBlock; ++bo) {
    const std::uint8_t* block_scales = scales + bo * kBlock * groups_per_row;
    for (std::uint64_t bi = 0; bi < blocks_across; ++bi) {
      const std::uint8_t largest = largest_code(block_scales, groups_per_row, bi);
      const float smax = e8m0_to_f32(largest) / kMaxOffset;
      out_scale[bo * blocks_across + bi] = new_scale(largest);
      std::uint8_t* block_out = codes_out + bo * kBlock * cols + bi * kBlock;
      if (largest == kE8m0Nan) {  // NaN offsets everywhere: every product is a positive NaN
        for (std::uint64_t r = 0; r < kBlock; ++r) std::memset(block_out + r * cols, kE4m3Nan, kBlock);
        continue;
      }
      const std::uint8_t* block_in = packed + bo * kBlock * (cols / 2) + bi * (kBlock / 2);
      for (std::uint64_t r = 0; r < kBlock; ++r) {
        const std::uint8_t* row_scales = block_scales + r * groups_per_row + bi * kGroupsAcross;
        for (std::uint64_t g = 0; g < kGroupsAcross; ++g) {
          const std::uint8_t d = tables->get(row_scales[g], largest, smax);
          if (isa == Isa::avx2) {
            block_tables[r * kGroupsAcross + g] = tables->codes[d].data();
            continue;
          }
          const std::uint8_t* in = block_in + r * (cols / 2) + g * (kGroup / 2);
          std::uint8_t* out = block_out + r * cols + g * kGroup;
          for (std::uint64_t j = 0; j < kGroup / 2; ++j)
            std::memcpy(out + 2 * j, &tables->pairs[d][in[j]], 2);
        }
      }
      if (isa == Isa::avx2)
        avx2::expand_fp4(block_in, cols / 2, block_out, cols, kBlock, kGroupsAcross, block_tables.data());
    }
  }
}

}  // namespace shardwise::transform
