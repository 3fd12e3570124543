// Block-scaled dequantisation to BF16 against y = bf16(f32(w * s)) computed exactly in the test:
// all 256 E4M3 codes x all 256 E8M0 codes, the same x F32 scales that are NaN, infinite, zero or
// subnormal, then block shapes with partial edge blocks, bands of block-rows, unaligned buffers and
// the size checks.

#include <shardwise/core/error.hpp>
#include <shardwise/transform/kernels.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "transform/exact_formats.hpp"

using namespace shardwise;
using namespace shardwise::transform;
namespace exact = shardwise::test::exact;

namespace {

std::uint16_t expected_bf16(std::uint8_t code, float scale, Bf16Nan nan) {
  const float y = exact::product(exact::e4m3_value(code), scale);
  return exact::round_to_bf16(y, static_cast<std::uint16_t>(nan));
}

std::uint16_t u16_at(const std::vector<std::byte>& bytes, std::size_t index) {
  std::uint16_t value;
  std::memcpy(&value, bytes.data() + 2 * index, 2);
  return value;
}

std::vector<std::byte> f32_bytes(const std::vector<float>& values) {
  std::vector<std::byte> out(4 * values.size());
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A scale value per block, read from the test's own copy (E8M0 codes or floats).
struct Scales {
  st::DType dtype;
  std::vector<std::byte> bytes;
  float at(std::size_t index) const {
    if (dtype == st::DType::F8_E8M0) return exact::e8m0_value(std::to_integer<std::uint8_t>(bytes[index]));
    float value;
    std::memcpy(&value, bytes.data() + 4 * index, 4);
    return value;
  }
};

// Expected output of a whole tensor, element by element from the definition.
std::vector<std::uint16_t> expected_tensor(const std::vector<std::byte>& weight, const Scales& scales,
                                           std::uint64_t rows, std::uint64_t cols, std::uint64_t scale_cols,
                                           std::uint64_t block_rows, std::uint64_t block_cols, Bf16Nan nan) {
  std::vector<std::uint16_t> out(rows * cols);
  for (std::uint64_t r = 0; r < rows; ++r) {
    for (std::uint64_t c = 0; c < cols; ++c) {
      const float scale = scales.at((r / block_rows) * scale_cols + c / block_cols);
      out[r * cols + c] = expected_bf16(std::to_integer<std::uint8_t>(weight[r * cols + c]), scale, nan);
    }
  }
  return out;
}

std::size_t count_mismatches(const std::vector<std::byte>& got, const std::vector<std::uint16_t>& want) {
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < want.size(); ++i) mismatches += u16_at(got, i) != want[i] ? 1 : 0;
  return mismatches;
}

}  // namespace

TEST_CASE("dequantize_to_bf16: all 256 E4M3 codes x all 256 E8M0 scale codes, each NaN policy") {
  // Row r holds every weight code and has scale code r (blocks of 1 x 256).
  std::vector<std::byte> weight(256 * 256), scale(256);
  for (std::size_t r = 0; r < 256; ++r) {
    scale[r] = std::byte(r);
    for (std::size_t c = 0; c < 256; ++c) weight[r * 256 + c] = std::byte(c);
  }
  for (Bf16Nan nan : {Bf16Nan::torch_cpu, Bf16Nan::canonical, Bf16Nan::triton}) {
    std::vector<std::byte> out(2 * weight.size());
    dequantize_to_bf16({weight, scale, st::DType::F8_E8M0, 256, 256, 1, 1, 256}, nan, out);
    const Scales scales{st::DType::F8_E8M0, scale};
    INFO("NaN bits 0x" << std::hex << static_cast<unsigned>(nan));
    CHECK(count_mismatches(out, expected_tensor(weight, scales, 256, 256, 1, 1, 256, nan)) == 0);
    CHECK(u16_at(out, 0x7F) == static_cast<std::uint16_t>(nan));              // NaN weight
    CHECK(u16_at(out, 255 * 256 + 0x38) == static_cast<std::uint16_t>(nan));  // NaN scale, w = 1
    CHECK(u16_at(out, 127 * 256 + 0x80) == 0x8000);                           // -0 x 1
  }
  // Spot values: 448 x 2^127 overflows to infinity; 2^-9 x 2^-127 is far below bf16's subnormals.
  std::vector<std::byte> out(2 * weight.size());
  dequantize_to_bf16({weight, scale, st::DType::F8_E8M0, 256, 256, 1, 1, 256}, Bf16Nan::torch_cpu, out);
  CHECK(u16_at(out, 254 * 256 + 0x7E) == 0x7F80);
  CHECK(u16_at(out, 254 * 256 + 0xFE) == 0xFF80);
  CHECK(u16_at(out, 0 * 256 + 0x01) == 0x0000);
  CHECK(u16_at(out, 0 * 256 + 0x81) == 0x8000);
}

TEST_CASE(
    "dequantize_to_bf16: all 256 E4M3 codes x F32 scales that are NaN, infinite, zero, subnormal, odd") {
  const std::vector<float> values{exact::kNaN,
                                  -exact::kNaN,
                                  std::bit_cast<float>(0x7F800001u),
                                  std::bit_cast<float>(0xFFBFFFFFu),
                                  INFINITY,
                                  -INFINITY,
                                  0.0f,
                                  -0.0f,
                                  std::ldexp(1.0f, -149),
                                  std::bit_cast<float>(0x007FFFFFu),
                                  std::ldexp(1.0f, -127),
                                  std::ldexp(1.0f, -126),
                                  1.0f,
                                  -1.0f,
                                  3.14159265f,
                                  -2.5f,
                                  1.0e-3f,
                                  7.0e-20f,
                                  1.0e30f,
                                  3.4028235e38f,
                                  0.1f,
                                  1.0f / 3.0f};
  std::vector<std::byte> weight(values.size() * 256);
  for (std::size_t r = 0; r < values.size(); ++r) {
    for (std::size_t c = 0; c < 256; ++c) weight[r * 256 + c] = std::byte(c);
  }
  const std::vector<std::byte> scale = f32_bytes(values);
  for (Bf16Nan nan : {Bf16Nan::torch_cpu, Bf16Nan::triton}) {
    std::vector<std::byte> out(2 * weight.size());
    dequantize_to_bf16({weight, scale, st::DType::F32, values.size(), 256, 1, 1, 256}, nan, out);
    CHECK(count_mismatches(out, expected_tensor(weight, {st::DType::F32, scale}, values.size(), 256, 1, 1,
                                                256, nan)) == 0);
    CHECK(u16_at(out, 4 * 256 + 0x00) == static_cast<std::uint16_t>(nan));  // 0 x inf
    CHECK(u16_at(out, 6 * 256 + 0x38) == 0x0000);                           // 1 x 0
    CHECK(u16_at(out, 7 * 256 + 0x38) == 0x8000);                           // 1 x -0
  }
}

TEST_CASE("dequantize_to_bf16: block shapes with partial edge blocks, padded scale rows, bands") {
  struct Shape {
    std::uint64_t rows, cols, block_rows, block_cols, extra_scale_cols;
    st::DType scale_dtype;
  };
  const std::vector<Shape> shapes{
      {300, 200, 128, 128, 0, st::DType::F32},     {256, 384, 128, 128, 0, st::DType::F8_E8M0},
      {129, 257, 128, 128, 2, st::DType::F8_E8M0}, {37, 45, 7, 5, 0, st::DType::F32},  // small blocks
      {40, 301, 3, 100, 1, st::DType::F32},        {1, 1, 128, 128, 0, st::DType::F8_E8M0},
      {130, 17, 64, 1, 0, st::DType::F8_E8M0},     {5, 600, 1, 512, 0, st::DType::F32}};
  std::mt19937 random(11);
  for (const Shape& s : shapes) {
    INFO("rows " << s.rows << " cols " << s.cols << " blocks " << s.block_rows << "x" << s.block_cols);
    const std::uint64_t block_count_rows = (s.rows + s.block_rows - 1) / s.block_rows;
    const std::uint64_t scale_cols = (s.cols + s.block_cols - 1) / s.block_cols + s.extra_scale_cols;
    std::vector<std::byte> weight(s.rows * s.cols);
    for (auto& b : weight) b = std::byte(random() & 0xFF);
    Scales scales{s.scale_dtype, {}};
    if (s.scale_dtype == st::DType::F8_E8M0) {
      scales.bytes.resize(block_count_rows * scale_cols);
      for (auto& b : scales.bytes) b = std::byte(100 + random() % 60);
    } else {
      std::vector<float> values(block_count_rows * scale_cols);
      for (auto& v : values)
        v = std::ldexp(static_cast<float>(random() % 1000) / 7.0f, static_cast<int>(random() % 40) - 20);
      scales.bytes = f32_bytes(values);
    }
    const auto want = expected_tensor(weight, scales, s.rows, s.cols, scale_cols, s.block_rows, s.block_cols,
                                      Bf16Nan::torch_cpu);
    // Whole tensor, in buffers shifted by one byte (tensor data need not be aligned).
    std::vector<std::byte> in_shifted(weight.size() + 1), scale_shifted(scales.bytes.size() + 1);
    std::memcpy(in_shifted.data() + 1, weight.data(), weight.size());
    std::memcpy(scale_shifted.data() + 1, scales.bytes.data(), scales.bytes.size());
    std::vector<std::byte> out_shifted(2 * weight.size() + 1);
    dequantize_to_bf16({std::span(in_shifted).subspan(1), std::span(scale_shifted).subspan(1), s.scale_dtype,
                        s.rows, s.cols, scale_cols, s.block_rows, s.block_cols},
                       Bf16Nan::torch_cpu, std::span(out_shifted).subspan(1));
    std::vector<std::byte> whole(out_shifted.begin() + 1, out_shifted.end());
    CHECK(count_mismatches(whole, want) == 0);
    // Band by band, one block-row at a time; the last band is the short one.
    const std::size_t scale_size = s.scale_dtype == st::DType::F32 ? 4 : 1;
    std::vector<std::byte> banded(2 * weight.size());
    for (std::uint64_t b = 0; b < block_count_rows; ++b) {
      const std::uint64_t row0 = b * s.block_rows, rows = std::min(s.block_rows, s.rows - row0);
      dequantize_to_bf16(
          {std::span(weight).subspan(row0 * s.cols, rows * s.cols),
           std::span(scales.bytes).subspan(b * scale_cols * scale_size, scale_cols * scale_size),
           s.scale_dtype, rows, s.cols, scale_cols, s.block_rows, s.block_cols},
          Bf16Nan::torch_cpu, std::span(banded).subspan(2 * row0 * s.cols, 2 * rows * s.cols));
    }
    CHECK(banded == whole);
  }
}

TEST_CASE("dequantize_to_bf16 refuses spans that do not match the numbers, naming them") {
  std::vector<std::byte> weight(256 * 256), scale(4), out(2 * 256 * 256);
  struct Bad {
    BlockScaledBand band;
    std::size_t out_bytes;
    std::string message;
  };
  const std::string shape = "(rows 256, cols 256, blocks 128x128, scale_cols 2)";
  const std::vector<Bad> cases{
      {{std::span(weight).first(100), scale, st::DType::F8_E8M0, 256, 256, 2, 128, 128},
       out.size(),
       "dequantize_to_bf16: weight holds 100 bytes, not 65536 " + shape},
      {{weight, std::span(scale).first(3), st::DType::F8_E8M0, 256, 256, 2, 128, 128},
       out.size(),
       "dequantize_to_bf16: scale holds 3 bytes, not 4 " + shape},
      {{weight, scale, st::DType::F32, 256, 256, 2, 128, 128},
       out.size(),
       "dequantize_to_bf16: scale holds 4 bytes, not 16 " + shape},
      {{weight, scale, st::DType::F8_E8M0, 256, 256, 2, 128, 128},
       10,
       "dequantize_to_bf16: output holds 10 bytes, not 131072 " + shape},
      {{weight, scale, st::DType::BF16, 256, 256, 2, 128, 128},
       out.size(),
       "dequantize_to_bf16: scale dtype BF16 is neither F8_E8M0 nor F32 " + shape},
      {{weight, scale, st::DType::F8_E8M0, 256, 256, 1, 128, 128},
       out.size(),
       "dequantize_to_bf16: scale_cols 1 < 2 blocks across (rows 256, cols 256, blocks 128x128, scale_cols "
       "1)"},
      {{weight, scale, st::DType::F8_E8M0, 256, 256, 2, 0, 128},
       out.size(),
       "dequantize_to_bf16: a block dimension is 0 (rows 256, cols 256, blocks 0x128, scale_cols 2)"},
      {{weight, scale, st::DType::F8_E8M0, 1ull << 40, 1ull << 40, 1, 1ull << 40, 1ull << 40},
       out.size(),
       "dequantize_to_bf16: rows x cols overflows 64 bits (1099511627776 x 1099511627776)"},
  };
  for (const Bad& c : cases) {
    INFO(c.message);
    try {
      dequantize_to_bf16(c.band, Bf16Nan::torch_cpu, std::span(out).first(c.out_bytes));
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()) == c.message);
      CHECK(e.kind() == ErrorKind::input);
    }
  }
}
