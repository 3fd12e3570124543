#include "safetensors/python_index.hpp"

#include <cstdint>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>

namespace shardwise::st {

namespace {

// The code point of the UTF-8 sequence at `text[i]`, advancing `i` past it. Valid input assumed;
// a stray byte is taken as the code point of its value, so the function never loops.
std::uint32_t next_code_point(std::string_view text, std::size_t& i) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(text[k])); };
  const std::uint32_t lead = byte(i);
  std::size_t extra = 0;
  std::uint32_t cp = lead;
  if (lead >= 0xF0) {
    extra = 3;
    cp = lead & 0x07;
  } else if (lead >= 0xE0) {
    extra = 2;
    cp = lead & 0x0F;
  } else if (lead >= 0xC0) {
    extra = 1;
    cp = lead & 0x1F;
  }
  if (i + extra >= text.size()) {  // truncated: never for valid input
    ++i;
    return lead;
  }
  for (std::size_t k = 1; k <= extra; ++k) cp = (cp << 6) | (byte(i + k) & 0x3F);
  i += 1 + extra;
  return cp;
}

void append_u_escape(std::string& out, std::uint32_t unit) { out += fmt::format("\\u{:04x}", unit); }

}  // namespace

std::string python_json_string(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size() + 2);
  out += '"';
  for (std::size_t i = 0; i < utf8.size();) {
    const std::uint32_t cp = next_code_point(utf8, i);
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (cp >= 0x20 && cp <= 0x7E) {
      out += static_cast<char>(cp);
    } else if (cp > 0xFFFF) {
      const std::uint32_t v = cp - 0x10000;
      append_u_escape(out, 0xD800 | (v >> 10));
      append_u_escape(out, 0xDC00 | (v & 0x3FF));
    } else {
      append_u_escape(out, cp);
    }
  }
  out += '"';
  return out;
}

std::string python_index_json(const std::vector<IndexEntry>& weight_map) {
  std::string out = "{\n  \"metadata\": {},\n  \"weight_map\": ";
  if (weight_map.empty()) return out + "{}\n}";
  out += "{\n";
  for (std::size_t i = 0; i < weight_map.size(); ++i) {
    out += "    ";
    out += python_json_string(weight_map[i].first);
    out += ": ";
    out += python_json_string(weight_map[i].second);
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
