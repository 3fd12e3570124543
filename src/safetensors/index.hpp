#pragma once
// model.safetensors.index.json: which file holds each tensor of a checkpoint folder. A fast path
// reads the plain shape writers produce; anything else goes to the full JSON reader, which words
// every message, so both give the same WeightMap or the same error.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/core/memory.hpp>

namespace shardwise::st::detail {

// Bytes in a block of their own, read into it without being zeroed first (an index of Pro's size is
// 17 MB: on huge pages).
struct IndexText {
  HugeBuffer bytes;
  std::size_t size = 0;
  std::string_view view() const { return {bytes.get(), size}; }
};
IndexText index_text(std::string_view text);  // a copy of `text`

// An index's weight_map, tensors sorted by name (byte order) for merging with the files' lists.
struct WeightMap {
  struct Entry {
    std::size_t name_at = 0;  // the tensor's name in `names`
    std::uint32_t name_size = 0;
    std::uint32_t file = 0;  // into `files`
  };
  IndexText names;                 // the bytes the entries' names are in
  HugeVector<Entry> tensors;       // sorted by name, each name once
  std::vector<std::string> files;  // the distinct files mapped to, sorted by name

  std::string_view name(const Entry& e) const { return names.view().substr(e.name_at, e.name_size); }
};

// Parses the text of an index. Throws Error(input) starting with `where: ` when it is not JSON, is
// nested deeper than 64 levels, has no weight_map object, maps a tensor twice or to a non-string,
// or names a file that would leave the folder.
WeightMap parse_index(IndexText text, const std::string& where);
WeightMap parse_index(std::string_view text, const std::string& where);  // on a copy of `text`

// The fast path alone: the WeightMap when the text has the plain shape writers produce and no
// problem (the text is then moved into it), else nullopt with the text left as it was.
std::optional<WeightMap> parse_index_fast(IndexText& text);

// parse_index without the fast path: the reference it must agree with (for tests and the fuzzer).
WeightMap parse_index_full(std::string_view text, const std::string& where);

// Reads the index at `path` (refusing more than 1 GB) and parses it.
WeightMap read_index(const std::filesystem::path& path);

}  // namespace shardwise::st::detail
