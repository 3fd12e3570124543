// FP8 (E4M3) dequantisation with every scale convention against y = out(f32(e4m3 x scale))
// computed in the test from the formats' definitions (exact_formats.hpp): every E4M3 code x special
// scales of each dtype (F32, BF16, F16, E8M0) to BF16 and F16, per-tensor and per-channel scales,
// block grids with partial blocks, bands starting anywhere, and the size checks.

#include <shardwise/core/error.hpp>
#include <shardwise/transform/fp8_scales.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "transform/exact_formats.hpp"

using namespace shardwise;
using namespace shardwise::transform;
namespace exact = shardwise::test::exact;

namespace {

// Scales of one dtype, as bytes and as the test reads them (from the definition).
struct Scales {
  st::DType dtype;
  std::vector<std::byte> bytes;
  std::size_t size() const { return bytes.size() / (st::dtype_bits(dtype) / 8); }
  float at(std::size_t index) const {
    std::uint16_t half = 0;
    float single = 0;
    switch (dtype) {
      case st::DType::F8_E8M0:
        return exact::e8m0_value(std::to_integer<std::uint8_t>(bytes[index]));
      case st::DType::F32:
        std::memcpy(&single, bytes.data() + 4 * index, 4);
        return single;
      case st::DType::F16:
        std::memcpy(&half, bytes.data() + 2 * index, 2);
        return exact::f16_value(half);
      default:
        std::memcpy(&half, bytes.data() + 2 * index, 2);
        return exact::bf16_value(half);
    }
  }
};

template <class T>
Scales scales_of(st::DType dtype, const std::vector<T>& values) {
  Scales s{dtype, std::vector<std::byte>(sizeof(T) * values.size())};
  std::memcpy(s.bytes.data(), values.data(), s.bytes.size());
  return s;
}

// The special values of QUANT_FORMATS.md section 5 per scale dtype, and a spread of magnitudes.
Scales special_scales(st::DType dtype) {
  switch (dtype) {
    case st::DType::F32: {
      const float inf = std::numeric_limits<float>::infinity();
      std::vector<float> v = {std::numeric_limits<float>::quiet_NaN(),
                              -std::numeric_limits<float>::quiet_NaN(),
                              inf,
                              -inf,
                              0.0f,
                              -0.0f,
                              1e-40f,
                              -1e-40f,
                              std::numeric_limits<float>::max(),
                              0x1p-126f,
                              0x1p-149f,
                              -2.5f,
                              1.6423611640930176f,
                              0x1.fffffep-1f,
                              1.0f};
      for (int e = -30; e <= 10; e += 4) v.push_back(std::ldexp(1.3f, e));
      return scales_of(dtype, v);
    }
    case st::DType::BF16: {
      std::vector<std::uint16_t> v = {0x7FC0, 0xFFC1, 0x7F80, 0xFF80, 0x0000, 0x8000,
                                      0x0001, 0x807F, 0x7F7F, 0xC020, 0x3F80};
      for (int e = 97; e <= 137; e += 4) v.push_back(static_cast<std::uint16_t>(e << 7 | 0x2B));
      return scales_of(dtype, v);
    }
    case st::DType::F16: {
      std::vector<std::uint16_t> v = {0x7E00, 0xFC01, 0x7C00, 0xFC00, 0x0000, 0x8000,
                                      0x0001, 0x83FF, 0x7BFF, 0xC500, 0x3C00};
      for (int e = 1; e <= 30; e += 3) v.push_back(static_cast<std::uint16_t>(e << 10 | 0x2AB));
      return scales_of(dtype, v);
    }
    default: {  // E8M0: every code
      std::vector<std::uint8_t> v(256);
      for (unsigned c = 0; c < 256; ++c) v[c] = static_cast<std::uint8_t>(c);
      return scales_of(dtype, v);
    }
  }
}

std::uint16_t expected(std::uint8_t code, float scale, const OutputFormat& format) {
  const float y = exact::product(exact::e4m3_value(code), scale);
  return format.dtype == st::DType::F16
             ? exact::round_to_f16(y)
             : exact::round_to_bf16(y, static_cast<std::uint16_t>(format.bf16_nan));
}

std::uint16_t u16_at(const std::vector<std::byte>& bytes, std::size_t index) {
  std::uint16_t value;
  std::memcpy(&value, bytes.data() + 2 * index, 2);
  return value;
}

// Compares a band's output with the expectation for weight [rows, cols] and scale S(r, c).
template <class ScaleOf>
std::size_t mismatches(const std::vector<std::byte>& weight, const std::vector<std::byte>& out,
                       std::uint64_t first_row, std::uint64_t rows, std::uint64_t cols,
                       const OutputFormat& format, ScaleOf scale_of) {
  std::size_t count = 0;
  for (std::uint64_t r = 0; r < rows; ++r) {
    for (std::uint64_t c = 0; c < cols; ++c) {
      const auto code = std::to_integer<std::uint8_t>(weight[(first_row + r) * cols + c]);
      const std::uint16_t want = expected(code, scale_of(first_row + r, c), format);
      const std::uint16_t have = u16_at(out, r * cols + c);
      if (want != have && ++count <= 5) {
        UNSCOPED_INFO("[" << first_row + r << ", " << c << "] code 0x" << std::hex << int{code} << " scale "
                          << scale_of(first_row + r, c) << ": got 0x" << have << ", want 0x" << want
                          << std::dec);
      }
    }
  }
  return count;
}

const OutputFormat kBf16{st::DType::BF16, Bf16Nan::canonical};
const OutputFormat kF16{st::DType::F16, Bf16Nan::canonical};
const st::DType kScaleDtypes[] = {st::DType::F32, st::DType::BF16, st::DType::F16, st::DType::F8_E8M0};

}  // namespace

TEST_CASE("dequantize_fp8: every E4M3 code x special scales of each dtype, to BF16 and F16") {
  for (const st::DType dtype : kScaleDtypes) {
    const Scales scales = special_scales(dtype);
    const std::uint64_t n = scales.size();
    // Blocks of 4 x 256: each scale meets every code 4 times (through the table); then blocks of
    // 1 x 256 (element by element).
    for (const std::uint64_t block_rows : {4u, 1u}) {
      const std::uint64_t rows = n * block_rows, cols = 256;
      std::vector<std::byte> weight(rows * cols);
      for (std::uint64_t i = 0; i < weight.size(); ++i)
        weight[i] = std::byte(static_cast<std::uint8_t>(i + i / 256 * 7));
      for (const OutputFormat& format : {kBf16, kF16, OutputFormat{st::DType::BF16, Bf16Nan::torch_cpu}}) {
        std::vector<std::byte> out(2 * rows * cols);
        dequantize_fp8({weight, scales.bytes, dtype, ScaleGrid::blocks(block_rows, 256), 0, rows, cols, 1},
                       format, out);
        INFO("scales " << st::dtype_name(dtype) << ", blocks " << block_rows << "x256, out "
                       << st::dtype_name(format.dtype) << " nan 0x" << std::hex
                       << static_cast<unsigned>(format.bf16_nan));
        CHECK(mismatches(weight, out, 0, rows, cols, format,
                         [&](std::uint64_t r, std::uint64_t) { return scales.at(r / block_rows); }) == 0);
      }
    }
  }
}

TEST_CASE("dequantize_fp8: F32 scales round the float32 product first (QUANT_FORMATS.md 2.3's example)") {
  // E4M3 0x39 (1.125) x F32 0x3FD238E4: the exact product rounds once to BF16 0x3FED, the float32
  // product (what every upstream computes) to 0x3FEC.
  const std::vector<std::byte> weight(1, std::byte{0x39});
  const std::uint32_t scale_bits = 0x3FD238E4u;
  std::vector<std::byte> scale(4), out(2);
  std::memcpy(scale.data(), &scale_bits, 4);
  dequantize_fp8({weight, scale, st::DType::F32, ScaleGrid::per_tensor(), 0, 1, 1, 1}, kBf16, out);
  CHECK(u16_at(out, 0) == 0x3FEC);
}

TEST_CASE("dequantize_fp8: per-channel and per-tensor scales, whole and in bands") {
  std::mt19937 random(3);
  for (const st::DType dtype : kScaleDtypes) {
    const Scales specials = special_scales(dtype);
    const std::uint64_t rows = specials.size(), cols = 300;
    std::vector<std::byte> weight(rows * cols);
    for (auto& b : weight) b = std::byte(static_cast<std::uint8_t>(random()));
    for (const OutputFormat& format : {kBf16, kF16}) {
      // Per channel: scale [rows, 1], a band of rows reads its own rows' scales.
      for (const std::uint64_t first : {0u, 1u, 5u}) {
        const std::uint64_t count = rows - first - (first == 5 ? 2 : 0);
        std::vector<std::byte> out(2 * count * cols);
        const std::size_t esize = st::dtype_bits(dtype) / 8;
        const std::span<const std::byte> band_scales =
            std::span(specials.bytes).subspan(first * esize, count * esize);
        const std::span<const std::byte> band_weight = std::span(weight).subspan(first * cols, count * cols);
        dequantize_fp8({band_weight, band_scales, dtype, ScaleGrid::per_channel(), first, count, cols, 1},
                       format, out);
        INFO("per channel, scales " << st::dtype_name(dtype) << ", rows " << first << "+" << count);
        CHECK(mismatches(weight, out, first, count, cols, format,
                         [&](std::uint64_t r, std::uint64_t) { return specials.at(r); }) == 0);
      }
      // Per tensor: one scale, each special in turn, over a band from row 3.
      for (std::size_t k = 0; k < specials.size(); ++k) {
        const std::size_t esize = st::dtype_bits(dtype) / 8;
        const std::span<const std::byte> one = std::span(specials.bytes).subspan(k * esize, esize);
        std::vector<std::byte> out(2 * (rows - 3) * cols);
        dequantize_fp8(
            {std::span(weight).subspan(3 * cols), one, dtype, ScaleGrid::per_tensor(), 3, rows - 3, cols, 1},
            format, out);
        INFO("per tensor, scales " << st::dtype_name(dtype) << " #" << k);
        CHECK(mismatches(weight, out, 3, rows - 3, cols, format,
                         [&](std::uint64_t, std::uint64_t) { return specials.at(k); }) == 0);
      }
    }
  }
}

TEST_CASE("dequantize_fp8: block grids with partial blocks, bands starting anywhere") {
  std::mt19937 random(5);
  struct Shape {
    std::uint64_t rows, cols, block_rows, block_cols, extra_scale_cols;
  };
  // 320 = 2.5 blocks, 192 = 1.5 blocks, 64 < 1 block; then small and tall blocks.
  const Shape shapes[] = {{320, 192, 128, 128, 0}, {64, 320, 128, 128, 0}, {192, 64, 128, 128, 1},
                          {37, 29, 8, 16, 0},      {50, 40, 1, 40, 0},     {9, 700, 4, 128, 2}};
  for (const st::DType dtype : kScaleDtypes) {
    const Scales specials = special_scales(dtype);
    for (const Shape& shape : shapes) {
      const std::uint64_t grid_rows = (shape.rows + shape.block_rows - 1) / shape.block_rows;
      const std::uint64_t scale_cols =
          (shape.cols + shape.block_cols - 1) / shape.block_cols + shape.extra_scale_cols;
      const std::size_t esize = st::dtype_bits(dtype) / 8;
      std::vector<std::byte> scale(grid_rows * scale_cols * esize);
      for (std::uint64_t k = 0; k < grid_rows * scale_cols; ++k) {
        const std::uint64_t pick = random() % specials.size();
        std::memcpy(scale.data() + k * esize, specials.bytes.data() + pick * esize, esize);
      }
      const Scales grid{dtype, scale};
      std::vector<std::byte> weight(shape.rows * shape.cols);
      for (auto& b : weight) b = std::byte(static_cast<std::uint8_t>(random()));
      const auto scale_of = [&](std::uint64_t r, std::uint64_t c) {
        return grid.at((r / shape.block_rows) * scale_cols + c / shape.block_cols);
      };
      const ScaleGrid blocks = ScaleGrid::blocks(shape.block_rows, shape.block_cols);
      for (const OutputFormat& format : {kBf16, kF16}) {
        // The whole weight, then bands of 7 rows (any start, crossing block rows).
        for (const std::uint64_t band_rows : {shape.rows, std::uint64_t{7}}) {
          for (std::uint64_t first = 0; first < shape.rows; first += band_rows) {
            const std::uint64_t count = std::min(band_rows, shape.rows - first);
            const IndexRange needed = fp8_band_scale_rows(blocks, first, count);
            const auto band_scale = std::span(scale).subspan(
                needed.begin * scale_cols * esize, (needed.end - needed.begin) * scale_cols * esize);
            std::vector<std::byte> out(2 * count * shape.cols);
            dequantize_fp8({std::span(weight).subspan(first * shape.cols, count * shape.cols), band_scale,
                            dtype, blocks, first, count, shape.cols, scale_cols},
                           format, out);
            INFO("scales " << st::dtype_name(dtype) << ", " << shape.rows << "x" << shape.cols << " blocks "
                           << shape.block_rows << "x" << shape.block_cols << ", rows " << first << "+"
                           << count);
            CHECK(mismatches(weight, out, first, count, shape.cols, format, scale_of) == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("fp8_band_scale_rows: the scale rows a band reads") {
  CHECK(fp8_band_scale_rows(ScaleGrid::blocks(128, 128), 0, 128).begin == 0);
  CHECK(fp8_band_scale_rows(ScaleGrid::blocks(128, 128), 0, 128).end == 1);
  CHECK(fp8_band_scale_rows(ScaleGrid::blocks(128, 128), 127, 2).begin == 0);
  CHECK(fp8_band_scale_rows(ScaleGrid::blocks(128, 128), 127, 2).end == 2);
  CHECK(fp8_band_scale_rows(ScaleGrid::per_channel(), 5, 3).begin == 5);
  CHECK(fp8_band_scale_rows(ScaleGrid::per_channel(), 5, 3).end == 8);
  CHECK(fp8_band_scale_rows(ScaleGrid::per_tensor(), 1000, 24).begin == 0);
  CHECK(fp8_band_scale_rows(ScaleGrid::per_tensor(), 1000, 24).end == 1);
}

TEST_CASE("dequantize_fp8: spans that do not hold the band are refused with the numbers") {
  const std::vector<std::byte> weight(12), scale(8);
  std::vector<std::byte> out(24);
  const auto message = [&](const Fp8Band& band, const OutputFormat& format) {
    try {
      dequantize_fp8(band, format, out);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const ScaleGrid per_channel = ScaleGrid::per_channel();
  CHECK(message({weight, std::span(scale).first(6), st::DType::F16, per_channel, 0, 3, 4, 1}, kBf16) ==
        "no error");
  CHECK(message({weight, scale, st::DType::F16, per_channel, 0, 3, 4, 1}, kBf16) ==
        "dequantize_fp8: scale holds 8 bytes, not 6 (scale rows 0..3) (first row 0, rows 3, cols 4, blocks "
        "1xall, "
        "scale_cols 1, scale dtype F16)");
  CHECK(message({weight, scale, st::DType::F16, ScaleGrid::blocks(2, 2), 0, 3, 4, 1}, kBf16) ==
        "dequantize_fp8: scale_cols 1 < 2 blocks across (first row 0, rows 3, cols 4, blocks 2x2, scale_cols "
        "1, scale "
        "dtype F16)");
  CHECK(message({weight, scale, st::DType::I8, per_channel, 0, 3, 4, 1}, kBf16) ==
        "dequantize_fp8: the scale dtype is not F32, BF16, F16 or F8_E8M0 (first row 0, rows 3, cols 4, "
        "blocks 1xall, "
        "scale_cols 1, scale dtype I8)");
  CHECK(
      message({weight, std::span(scale).first(6), st::DType::F16, per_channel, 0, 3, 4, 1},
              {st::DType::F32}) ==
      "dequantize_fp8: output dtype F32 is neither BF16 nor F16 (first row 0, rows 3, cols 4, blocks 1xall, "
      "scale_cols 1, scale dtype F16)");
  CHECK(message(
            {std::span(weight).first(11), std::span(scale).first(6), st::DType::F16, per_channel, 0, 3, 4, 1},
            kBf16) ==
        "dequantize_fp8: weight holds 11 bytes, not 12 (first row 0, rows 3, cols 4, blocks 1xall, "
        "scale_cols 1, "
        "scale dtype F16)");
  CHECK(message({weight, std::span(scale).first(2), st::DType::F16, ScaleGrid::blocks(0, 4), 0, 3, 4, 1},
                kBf16) ==
        "dequantize_fp8: a block dimension is 0 (first row 0, rows 3, cols 4, blocks 0x4, scale_cols 1, "
        "scale dtype F16)");
}
