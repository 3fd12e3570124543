#pragma once
// The first stage of header parsing: the JSON text, read with a SAX handler that accepts only the
// shape a safetensors header can have. Nothing here gives the numbers meaning (header.cpp does);
// this stage guarantees every field is present once, with the right JSON type.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace shardwise::st::detail {

// One tensor entry as the JSON gave it: all three fields present, integers non-negative.
struct RawEntry {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::vector<std::uint64_t> data_offsets;  // any length; header.cpp requires two
};

struct RawHeader {
  std::map<std::string, std::string> metadata;
  std::vector<RawEntry> entries;  // in the order of the text
};

// More dimensions than this are refused, to bound the memory a hostile header can claim.
inline constexpr std::size_t kMaxRank = 1024;

// Reads `text` (already known to be UTF-8 without NUL bytes). Throws Error(input) starting with
// `file: ` on the first problem. Never recurses: the accepted shape has a nesting depth of 3, and
// anything deeper is refused at its first bracket.
RawHeader read_header_json(std::string_view text, const std::string& file);

// `name` in single quotes for messages: control bytes escaped, at most 200 bytes shown, so a
// hostile name can neither flood nor drive the terminal.
std::string quote_name(std::string_view name);

}  // namespace shardwise::st::detail
