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

// The whole file: {"metadata": {}, "weight_map": {...}} with indent=2, entries in the given order,
// strings as append_python_json_string writes them. Error(input) for a name that is not UTF-8.
std::string python_index_json(const std::vector<IndexEntry>& weight_map);

// The weight_map of an index file's text, in the order the file lists it (Python's json.load keeps
// it). Throws Error(input) naming `path` when it is not an object with a weight_map of strings.
std::vector<IndexEntry> read_weight_map_in_order(std::string_view text, const std::string& path);

}  // namespace shardwise::st
