#pragma once
// The element types of the safetensors format, with their sizes and the order writers lay them out.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace shardwise::st {

// Declared in the reference implementation's enum order; the writer lays out larger values first.
enum class DType : std::uint8_t {
  BOOL,
  F4,
  F6_E2M3,
  F6_E3M2,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  F8_E4M3FNUZ,
  F8_E5M2FNUZ,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  C64,
  F64,
  I64,
  U64,
};

using Shape = std::vector<std::uint64_t>;
// How messages and views write a shape: "[512, 4096]", "[]" for a scalar.
std::string shape_text(std::span<const std::uint64_t> shape);

std::optional<DType> parse_dtype(std::string_view name);
std::string_view dtype_name(DType dtype);
// Bits per element: 4 for F4, 6 for F6_*, 8 * bytes otherwise.
unsigned dtype_bits(DType dtype);
// Rank in the writer's layout order: tensors with a larger rank come first.
unsigned dtype_layout_rank(DType dtype);

// Element count of `shape`, or nullopt on overflow of 64 bits.
std::optional<std::uint64_t> element_count(std::span<const std::uint64_t> shape);
// Bytes of a tensor, or nullopt on overflow or when a sub-byte tensor does not end on a byte boundary.
std::optional<std::uint64_t> byte_size(DType dtype, std::span<const std::uint64_t> shape);

}  // namespace shardwise::st
