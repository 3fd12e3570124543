#pragma once
// The fast path of header parsing: one pass over the text for the shape writers produce, with no
// message ever built. The full path (header_json + the checks in header.cpp) stays the reference:
// it runs whenever this one declines, so every error keeps its exact words.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <shardwise/safetensors/header.hpp>

namespace shardwise::st::detail {

// Reads `text`, which must already be known to be UTF-8 without NUL bytes, as the header of a file
// holding `data_bytes` bytes of data. Returns the Header the full path would return (but for
// header_bytes and data_start, which the caller sets; the names are in the Header's own block), or
// nullopt when the text holds anything outside `{"__metadata__": {str: str}, name: {"dtype": str,
// "shape": [uint], "data_offsets": [uint, uint]}}` with plain strings (no escapes), or when any
// check of the full path would fail. A text of `split_from` bytes or more is read in two parts on
// two threads (a Pro-sized checkpoint's header is 24 MB), each part then sorted by name on its
// thread and the tensors built in two halves, with the same outcome; tests give a small
// `split_from`.
inline constexpr std::size_t kSplitFrom = std::size_t{4} << 20;
std::optional<Header> read_header_fast(std::string_view text, std::uint64_t data_bytes,
                                       std::size_t split_from = kSplitFrom);

// parse_header without the fast path: the reference it must agree with (for tests and the fuzzer).
Header parse_header_full(std::string_view json_text, std::uint64_t file_size, const std::string& file);

}  // namespace shardwise::st::detail
