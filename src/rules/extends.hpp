#pragma once
// A rules file and the files it builds on (`extends: NAME-or-PATH`), read and parsed, each with its
// own reader so that every problem and every rule keeps the location of the file it was written in.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "rules/yaml_reader.hpp"

namespace shardwise::rules::detail {

struct RulesSource {
  RulesSource(std::string display_name_, std::string text_)
      : display_name(std::move(display_name_)), text(std::move(text_)), reader(display_name) {}
  std::string display_name;  // the path as given (a parent's: resolved from its child's folder), or
                             // "<bundled>/x.yaml"
  std::string text;
  YamlReader reader;
  YAML::Node root;  // undefined when the text is not UTF-8 YAML within the limits (already reported)
};

// Reads the rules file at `path` (at most 1 MiB). Throws Error(io) when the OS refuses, Error(rules)
// when it is too large or not a regular file (a FIFO, a device, a folder: refused before reading).
std::string read_rules_file(const std::string& path);

// `yaml` and every file it extends, the file itself first, then its parent, then the parent's
// parent. A parent that cannot be found or read, a cycle, or a chain deeper than 8 files is a
// problem reported at the `extends:` that names it; the chain stops there.
std::vector<std::unique_ptr<RulesSource>> read_extends_chain(std::string_view yaml,
                                                             const std::string& display_name);

}  // namespace shardwise::rules::detail
