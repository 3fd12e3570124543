#include "rules/yaml_reader.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include <shardwise/core/decimal.hpp>

#include <shardwise/rules/suggest.hpp>
#include <shardwise/safetensors/utf8.hpp>

namespace shardwise::rules::detail {

std::string_view node_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

SourceLocation YamlReader::where(const YAML::Mark& mark) const {
  // yaml-cpp marks are 0-based, and -1 for nodes it made up (no position).
  if (mark.line < 0) return {file_, 0, 0};
  return {file_, mark.line + 1, mark.column + 1};
}

SourceLocation YamlReader::where(const YAML::Node& node) const { return where(node.Mark()); }

void YamlReader::error(const SourceLocation& at, const std::string& message) {
  problems_.emplace_back(at, at.str() + ": " + message);
}

std::vector<std::string> YamlReader::problems() const {
  auto sorted = problems_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return std::pair(a.first.line, a.first.column) < std::pair(b.first.line, b.first.column);
  });
  std::vector<std::string> messages;
  for (auto& problem : sorted) messages.push_back(std::move(problem.second));
  return messages;
}

bool YamlReader::check_open_map(const YAML::Node& node, const std::string& what) {
  if (!node.IsMap()) {
    error(node, fmt::format("{} must be a map, got {}", what, node_kind(node)));
    return false;
  }
  std::map<std::string, YAML::Mark, std::less<>> seen;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) {
      error(entry.first, fmt::format("keys of {} must be scalars, got {}", what, node_kind(entry.first)));
      continue;
    }
    const std::string& key = entry.first.Scalar();
    const auto [it, fresh] = seen.emplace(key, entry.first.Mark());
    if (!fresh) {
      const auto first = where(it->second);
      error(entry.first,
            fmt::format("duplicate key '{}' in {} (first at {}:{})", key, what, first.line, first.column));
    }
  }
  return true;
}

bool YamlReader::check_map(const YAML::Node& node, const std::string& what,
                           const std::vector<std::string>& allowed) {
  if (!check_open_map(node, what)) return false;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string& key = entry.first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      error(entry.first, fmt::format("unknown key '{}' in {}{}", key, what, did_you_mean(key, allowed)));
    }
  }
  return true;
}

bool YamlReader::check_list(const YAML::Node& node, const std::string& what) {
  if (node.IsSequence()) return true;
  error(node, fmt::format("{} must be a list, got {}", what, node_kind(node)));
  return false;
}

YAML::Node YamlReader::field(const YAML::Node& map, const std::string& key) {
  for (const auto& entry : map) {
    if (entry.first.IsScalar() && entry.first.Scalar() == key) return entry.second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

std::optional<std::string> YamlReader::string_value(const YAML::Node& node, const std::string& what) {
  if (node.IsScalar()) return node.Scalar();
  error(node, fmt::format("{} must be a string, got {}", what, node_kind(node)));
  return std::nullopt;
}

std::optional<std::uint64_t> YamlReader::uint_value(const YAML::Node& node, const std::string& what) {
  if (node.IsScalar()) {
    const std::string& text = node.Scalar();
    if (const std::optional<std::uint64_t> value = parse_decimal(text)) return value;
    error(node, fmt::format("{} must be a non-negative integer, got '{}'", what, text));
    return std::nullopt;
  }
  error(node, fmt::format("{} must be a non-negative integer, got {}", what, node_kind(node)));
  return std::nullopt;
}

std::optional<std::string> YamlReader::string_field(const YAML::Node& map, const std::string& key,
                                                    const std::string& what, bool required) {
  const YAML::Node value = field(map, key);
  if (!value.IsDefined()) {
    if (required) error(map, fmt::format("{} is missing required key '{}'", what, key));
    return std::nullopt;
  }
  return string_value(value, fmt::format("'{}' of {}", key, what));
}

std::optional<std::uint64_t> YamlReader::uint_field(const YAML::Node& map, const std::string& key,
                                                    const std::string& what, bool required) {
  const YAML::Node value = field(map, key);
  if (!value.IsDefined()) {
    if (required) error(map, fmt::format("{} is missing required key '{}'", what, key));
    return std::nullopt;
  }
  return uint_value(value, fmt::format("'{}' of {}", key, what));
}

std::optional<std::vector<std::string>> YamlReader::string_list(const YAML::Node& node,
                                                                const std::string& what) {
  if (!check_list(node, what)) return std::nullopt;
  std::vector<std::string> values;
  for (const auto& item : node) {
    if (auto value = string_value(item, "an entry of " + what)) values.push_back(std::move(*value));
  }
  return values;
}

bool check_utf8(std::string_view text, YamlReader& in) {
  const std::size_t bad = st::detail::first_bad_byte(text);
  if (bad == std::string_view::npos) return true;
  // Lines and columns as an editor counts them: the text before `bad` is valid UTF-8, and a
  // continuation byte takes no column.
  const std::size_t line_start = text.rfind('\n', bad == 0 ? 0 : bad - 1);
  const std::size_t from = line_start == std::string_view::npos || bad == 0 ? 0 : line_start + 1;
  const auto line = std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(from), '\n') + 1;
  const auto column = 1 + std::count_if(text.begin() + static_cast<std::ptrdiff_t>(from),
                                        text.begin() + static_cast<std::ptrdiff_t>(bad), [](char c) {
                                          return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
                                        });
  const auto byte = static_cast<unsigned char>(text[bad]);
  in.error(
      SourceLocation{in.file(), static_cast<int>(line), static_cast<int>(column)},
      byte == 0
          ? std::string("a NUL byte: a rules file is UTF-8 text")
          : fmt::format("byte 0x{:02x} is not UTF-8: a rules file is UTF-8 text (save it as UTF-8)", byte));
  return false;
}

bool check_expanded_size(const YAML::Node& root, YamlReader& in) {
  std::size_t nodes = 1;
  std::size_t bytes = 0;
  std::vector<YAML::Node> pending{root};  // never more than `nodes`
  const auto count = [&](const YAML::Node& node) {
    ++nodes;
    if (node.IsScalar()) bytes += node.Scalar().size();
    pending.push_back(node);
    return nodes <= kMaxExpandedNodes && bytes <= kMaxExpandedBytes;
  };
  while (!pending.empty()) {
    const YAML::Node node = pending.back();
    pending.pop_back();
    bool within = true;
    if (node.IsSequence()) {
      for (const YAML::Node& child : node) {
        if (!(within = count(child))) break;
      }
    } else if (node.IsMap()) {
      for (const auto& entry : node) {
        if (!(within = count(entry.first) && count(entry.second))) break;
      }
    }
    if (!within) {
      in.error(node,
               fmt::format("the YAML expands to more than {} once its aliases (*name) are expanded: at most "
                           "{} nodes and {} bytes of text are accepted",
                           nodes > kMaxExpandedNodes ? fmt::format("{} nodes", kMaxExpandedNodes)
                                                     : fmt::format("{} bytes", kMaxExpandedBytes),
                           kMaxExpandedNodes, kMaxExpandedBytes));
      return false;
    }
  }
  return true;
}

}  // namespace shardwise::rules::detail
