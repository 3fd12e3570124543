#pragma once
// Reading a YAML document against a schema while collecting every problem with its location, so a
// rules author sees all mistakes of a file in one run. Problems are `FILE:LINE:COL: message`.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include <shardwise/rules/rules.hpp>

namespace shardwise::rules::detail {

class YamlReader {
 public:
  explicit YamlReader(std::string display_name) : file_(std::move(display_name)) {}
  const std::string& file() const { return file_; }

  SourceLocation where(const YAML::Node& node) const;
  SourceLocation where(const YAML::Mark& mark) const;
  void error(const SourceLocation& at, const std::string& message);
  void error(const YAML::Node& node, const std::string& message) { error(where(node), message); }
  // Every problem as `FILE:LINE:COL: message`, in file order (sections are read in a fixed order,
  // not the order the author wrote them).
  std::vector<std::string> problems() const;

  // True when `node` is a map. Reports (and then ignores) a non-map, keys not in `allowed` (with
  // the nearest allowed key), non-scalar keys and duplicate keys, which yaml-cpp accepts silently.
  bool check_map(const YAML::Node& node, const std::string& what, const std::vector<std::string>& allowed);
  // Like check_map for maps whose keys are names chosen by the author (table keys, layout names):
  // only non-scalar and duplicate keys are reported.
  bool check_open_map(const YAML::Node& node, const std::string& what);
  bool check_list(const YAML::Node& node, const std::string& what);

  // Typed fields of a map. A missing required field, or a value of the wrong type, is reported and
  // yields nullopt. `what` names the map in messages ("skip rule", "table entry 'x'").
  std::optional<std::string> string_field(const YAML::Node& map, const std::string& key,
                                          const std::string& what, bool required);
  std::optional<std::uint64_t> uint_field(const YAML::Node& map, const std::string& key,
                                          const std::string& what, bool required);
  std::optional<std::string> string_value(const YAML::Node& node, const std::string& what);
  std::optional<std::uint64_t> uint_value(const YAML::Node& node, const std::string& what);
  // A list of strings (each entry checked); nullopt when the node is not a list.
  std::optional<std::vector<std::string>> string_list(const YAML::Node& node, const std::string& what);

  // The field `key` of `map` when present (the first occurrence; duplicates are reported by
  // check_map), else an undefined node.
  static YAML::Node field(const YAML::Node& map, const std::string& key);

 private:
  std::string file_;
  std::vector<std::pair<SourceLocation, std::string>> problems_;
};

std::string_view node_kind(const YAML::Node& node);

// A rules file is UTF-8 text without NUL bytes: false after reporting the first byte that is not,
// at its FILE:LINE:COL.
bool check_utf8(std::string_view text, YamlReader& in);

// Aliases (`*name`) repeat their anchor's node wherever they appear, so a small file can be a huge
// tree (a megabyte of aliased 50 KB patterns is gigabytes); the loader walks, copies and compiles
// the tree as expanded. False after reporting it when, aliases expanded, it holds more than
// kMaxExpandedNodes nodes or kMaxExpandedBytes bytes of scalars. The walk stops at the limit, so
// its own work is bounded too (an alias of its own anchor, which yaml-cpp builds as a cycle,
// included).
inline constexpr std::size_t kMaxExpandedNodes = 200'000;
inline constexpr std::size_t kMaxExpandedBytes = std::size_t{4} << 20;
bool check_expanded_size(const YAML::Node& root, YamlReader& in);

}  // namespace shardwise::rules::detail
