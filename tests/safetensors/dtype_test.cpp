#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <shardwise/safetensors/dtype.hpp>

using namespace shardwise::st;

TEST_CASE("every dtype of the spec parses, round-trips its name and has its size") {
  struct Row {
    const char* name;
    unsigned bits;
  };
  const std::vector<Row> rows = {
      {"BOOL", 8},        {"U8", 8},   {"I8", 8},      {"I16", 16},    {"U16", 16},    {"I32", 32},
      {"U32", 32},        {"I64", 64}, {"U64", 64},    {"F16", 16},    {"BF16", 16},   {"F32", 32},
      {"F64", 64},        {"C64", 64}, {"F8_E4M3", 8}, {"F8_E5M2", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8},
      {"F8_E5M2FNUZ", 8}, {"F4", 4},   {"F6_E2M3", 6}, {"F6_E3M2", 6},
  };
  REQUIRE(rows.size() == 22);
  for (const auto& row : rows) {
    INFO(row.name);
    auto dtype = parse_dtype(row.name);
    REQUIRE(dtype);
    CHECK(dtype_name(*dtype) == row.name);
    CHECK(dtype_bits(*dtype) == row.bits);
  }
}

TEST_CASE("dtype names are case-sensitive and exact") {
  for (const char* bad : {"f32", "F32 ", "", "FLOAT", "F8", "F8_E4M3FN", "F6", "BFloat16"}) {
    INFO(bad);
    CHECK_FALSE(parse_dtype(bad));
  }
}

TEST_CASE("layout rank follows the reference writer: larger alignment first") {
  const std::vector<DType> descending = {DType::U64, DType::I64, DType::F64,  DType::C64, DType::F32,
                                         DType::U32, DType::I32, DType::BF16, DType::F16, DType::U16,
                                         DType::I16, DType::U8,  DType::BOOL};
  for (std::size_t i = 1; i < descending.size(); ++i) {
    INFO(dtype_name(descending[i - 1]) << " before " << dtype_name(descending[i]));
    CHECK(dtype_layout_rank(descending[i - 1]) > dtype_layout_rank(descending[i]));
  }
}

TEST_CASE("element counts and byte sizes are overflow-checked") {
  using Shape = std::vector<std::uint64_t>;
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  CHECK(element_count(Shape{}) == 1u);
  CHECK(element_count(Shape{0, max}) == 0u);
  CHECK(element_count(Shape{max}) == max);
  CHECK_FALSE(element_count(Shape{1ull << 32, 1ull << 32}));
  CHECK(byte_size(DType::F32, Shape{3, 4}) == 48u);
  CHECK(byte_size(DType::C64, Shape{2}) == 16u);
  CHECK_FALSE(byte_size(DType::F64, Shape{1ull << 61}));
  CHECK(byte_size(DType::U8, Shape{max}) == max);
  CHECK(byte_size(DType::F4, Shape{2}) == 1u);
  CHECK_FALSE(byte_size(DType::F4, Shape{3}));
  CHECK(byte_size(DType::F6_E2M3, Shape{4}) == 3u);
  CHECK_FALSE(byte_size(DType::F6_E3M2, Shape{2}));
  CHECK(byte_size(DType::F4, Shape{0}) == 0u);
  // Counts near 2^64 stay exact for sub-byte types: 2^64 - 2 F4 elements are 2^63 - 1 bytes.
  CHECK(byte_size(DType::F4, Shape{max - 1}) == (max >> 1));
}
