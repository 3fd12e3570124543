#pragma once
// A parsed and validated safetensors header. Parsing takes untrusted bytes: everything in
// SAFETENSORS.md's reading rules is checked before any offset is used.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/core/memory.hpp>
#include <shardwise/safetensors/dtype.hpp>
#include <shardwise/safetensors/small_shape.hpp>

namespace shardwise::st {

// One tensor of a header. Its name is a view into the names block of the Header it came from
// (NUL-terminated there): valid as long as that Header, or a copy of it, lives. Keep a
// std::string of it to hold it longer.
struct TensorInfo {
  std::string_view name;
  DType dtype;
  SmallShape shape;
  std::uint64_t begin = 0;  // offsets relative to the start of the data buffer
  std::uint64_t end = 0;
  std::uint64_t bytes() const noexcept { return end - begin; }
};

struct Header {
  std::uint64_t header_bytes = 0;  // N: the JSON length, padding included
  std::uint64_t data_start = 0;    // 8 + N
  std::map<std::string, std::string> metadata;
  HugeVector<TensorInfo> tensors;                       // sorted by name (byte order)
  const TensorInfo* find(std::string_view name) const;  // binary search; nullptr when absent
  // The bytes `tensors`' names view, in one block for all of them (not a heap block per tensor, at
  // 217,000 tensors in a header of DeepSeek-V4-Pro's size); shared by the Header's copies.
  std::shared_ptr<const char[]> names;
};

inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

// Validates the JSON text of a header (the N bytes after the length prefix) against a file whose
// total size is `file_size`. Throws Error(input) naming `file` (and the tensor, with the numbers)
// on the first problem. Never recurses on the input's nesting depth.
Header parse_header(std::string_view json_text, std::uint64_t file_size, const std::string& file);

// Decodes the 8-byte little-endian length prefix N and checks it against the limit and the file
// size (8 + N <= file_size). Throws Error(input) naming `file`.
std::uint64_t read_header_length(std::span<const std::byte, 8> prefix, std::uint64_t file_size,
                                 const std::string& file);

}  // namespace shardwise::st
