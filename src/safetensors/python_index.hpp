#pragma once
// The index file as Python writes it: `json.dump({"metadata": {}, "weight_map": MAP}, f, indent=2)`
// (DeepSeek's fp8_cast_bf16.py rewrites the index so), byte for byte: ensure_ascii escapes, ", "
// and ": " separators with a two-space indent, no trailing newline. Pure functions, no I/O.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shardwise::st {

// One weight_map entry: tensor name -> file name, in the order of the map.
using IndexEntry = std::pair<std::string, std::string>;

// A string as Python's json.dumps writes it with ensure_ascii (the default): in double quotes;
// `"` and `\` escaped with a backslash; \b \f \n \r \t short; every other code point outside
// ' '..'~' as \uXXXX in lowercase hex, those above U+FFFF as a UTF-16 surrogate pair. `utf8` must
// be valid UTF-8 (the index reader checked it).
std::string python_json_string(std::string_view utf8);

// The whole file: {"metadata": {}, "weight_map": {...}} with indent=2, entries in the given order.
std::string python_index_json(const std::vector<IndexEntry>& weight_map);

// The weight_map of an index file's text, in the order the file lists it (Python's json.load keeps
// it). Throws Error(input) naming `path` when it is not an object with a weight_map of strings.
std::vector<IndexEntry> read_weight_map_in_order(std::string_view text, const std::string& path);

}  // namespace shardwise::st
