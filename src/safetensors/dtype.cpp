#include <shardwise/safetensors/dtype.hpp>

#include <array>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace shardwise::st {

namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  unsigned bits;
};

// One row per enumerator, in enum order (the table is indexed by the enum's value).
constexpr std::array<DTypeInfo, 22> kDTypes = {{
    {DType::BOOL, "BOOL", 8},
    {DType::F4, "F4", 4},
    {DType::F6_E2M3, "F6_E2M3", 6},
    {DType::F6_E3M2, "F6_E3M2", 6},
    {DType::U8, "U8", 8},
    {DType::I8, "I8", 8},
    {DType::F8_E5M2, "F8_E5M2", 8},
    {DType::F8_E4M3, "F8_E4M3", 8},
    {DType::F8_E8M0, "F8_E8M0", 8},
    {DType::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {DType::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {DType::I16, "I16", 16},
    {DType::U16, "U16", 16},
    {DType::F16, "F16", 16},
    {DType::BF16, "BF16", 16},
    {DType::I32, "I32", 32},
    {DType::U32, "U32", 32},
    {DType::F32, "F32", 32},
    {DType::C64, "C64", 64},
    {DType::F64, "F64", 64},
    {DType::I64, "I64", 64},
    {DType::U64, "U64", 64},
}};

constexpr bool table_in_enum_order() {
  for (std::size_t i = 0; i < kDTypes.size(); ++i) {
    if (static_cast<std::size_t>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(table_in_enum_order(), "kDTypes must list the enumerators in declaration order");

const DTypeInfo& info(DType dtype) { return kDTypes[static_cast<std::size_t>(dtype)]; }

}  // namespace

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& row : kDTypes) {
    if (row.name == name) return row.dtype;
  }
  return std::nullopt;
}

std::string_view dtype_name(DType dtype) { return info(dtype).name; }

std::string shape_text(std::span<const std::uint64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

unsigned dtype_bits(DType dtype) { return info(dtype).bits; }

// The reference writer sorts by its enum (declared smallest alignment first) in descending order,
// and our enum mirrors that declaration, so the rank is the enumerator's value.
unsigned dtype_layout_rank(DType dtype) { return static_cast<unsigned>(dtype); }

std::optional<std::uint64_t> element_count(std::span<const std::uint64_t> shape) {
  std::uint64_t count = 1;
  for (std::uint64_t dim : shape) {
    if (__builtin_mul_overflow(count, dim, &count)) return std::nullopt;
  }
  return count;
}

std::optional<std::uint64_t> byte_size(DType dtype, std::span<const std::uint64_t> shape) {
  auto count = element_count(shape);
  if (!count) return std::nullopt;
  const unsigned bits = dtype_bits(dtype);
  if (bits % 8 == 0) {
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(*count, std::uint64_t{bits / 8}, &bytes)) return std::nullopt;
    return bytes;
  }
  // Sub-byte types: the tensor must end on a byte boundary. Eight elements always fill `bits`
  // whole bytes, so split the count to stay exact for counts near 2^64.
  const std::uint64_t rest_bits = (*count % 8) * bits;
  if (rest_bits % 8 != 0) return std::nullopt;
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(*count / 8, std::uint64_t{bits}, &bytes)) return std::nullopt;
  if (__builtin_add_overflow(bytes, rest_bits / 8, &bytes)) return std::nullopt;
  return bytes;
}

}  // namespace shardwise::st
