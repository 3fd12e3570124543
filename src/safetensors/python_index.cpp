#include <shardwise/safetensors/python_index.hpp>

#include <cstdint>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>

#include "safetensors/json_escape.hpp"

namespace shardwise::st {

std::string python_index_json(const std::vector<IndexEntry>& weight_map) {
  std::string out = "{\n  \"metadata\": {},\n  \"weight_map\": ";
  if (weight_map.empty()) return out + "{}\n}";
  out += "{\n";
  for (std::size_t i = 0; i < weight_map.size(); ++i) {
    out += "    ";
    append_python_json_string(out, weight_map[i].first, "tensor name");
    out += ": ";
    append_python_json_string(out, weight_map[i].second, fmt::format("file name of {}", weight_map[i].first));
    out += i + 1 < weight_map.size() ? ",\n" : "\n";
  }
  return out + "  }\n}";
}

std::vector<IndexEntry> read_weight_map_in_order(std::string_view text, const std::string& path) {
  nlohmann::ordered_json doc;
  try {
    doc = nlohmann::ordered_json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::input, fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
  if (!doc.is_object() || !doc.contains("weight_map") || !doc["weight_map"].is_object()) {
    throw Error(ErrorKind::input, fmt::format("{}: no \"weight_map\" object", path));
  }
  std::vector<IndexEntry> entries;
  entries.reserve(doc["weight_map"].size());
  for (const auto& [name, file] : doc["weight_map"].items()) {
    if (!file.is_string()) {
      throw Error(ErrorKind::input, fmt::format("{}: weight_map[{}] is not a file name", path, name));
    }
    entries.emplace_back(name, file.get<std::string>());
  }
  return entries;
}

}  // namespace shardwise::st
