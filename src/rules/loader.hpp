#pragma once
// Reading the sections of a rules file into CompiledRules. Each function reports its problems to the
// reader and keeps going, so one run lists every mistake of the file.

#include <yaml-cpp/yaml.h>

#include "rules/rules_impl.hpp"
#include "rules/yaml_reader.hpp"

namespace shardwise::rules::detail {

// shardwise, name, output, ...: a value given replaces the one read before (files are read parent
// first); name and output are required of a file that extends nothing.
void read_header(YamlReader& in, const YAML::Node& root, CompiledRules& out, bool extends);
void read_params(YamlReader& in, const YAML::Node& node, CompiledRules& out);
// A parameter's `from_config:` and `map:` (param_resolve.cpp).
void read_from_config(YamlReader& in, const YAML::Node& map, const std::string& what, ParamInfo& spec);
void read_normalize(YamlReader& in, const YAML::Node& node, CompiledRules& out);
// Each component's fate under the ordered renames of every file, once they are all read.
void compile_renames(CompiledRules& out);
void read_rejects(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_skips(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_layouts(YamlReader& in, const YAML::Node& node, CompiledRules& out);  // layouts.cpp
void read_keys(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_table(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_overrides(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_ownership(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_tests(YamlReader& in, const YAML::Node& node, CompiledRules& out);  // file_tests.cpp

// Whether an entry of a map section (param, layout) was already declared by an extending file,
// whose entry replaces this one whole. Extending files are read first.
inline bool replaced_by_child(const YamlReader& in, const SourceLocation& earlier) {
  return earlier.file != in.file();
}
// "LINE:COL" for a location in the file being read, "FILE:LINE:COL" for one in another file.
inline std::string short_where(const YamlReader& in, const SourceLocation& at) {
  return at.file == in.file() ? std::to_string(at.line) + ":" + std::to_string(at.column) : at.str();
}
void read_transforms(YamlReader& in, const YAML::Node& node, CompiledRules& out);

// A dtype name ("F8_E4M3"), reported with a did-you-mean otherwise (layouts.cpp).
std::optional<st::DType> read_dtype(YamlReader& in, const YAML::Node& node, const std::string& what);

// "out" | "in" | "replicate", reported with a did-you-mean otherwise.
std::optional<Split> read_split(YamlReader& in, const YAML::Node& node, const std::string& what);
// A single name component: non-empty, no '.'.
bool is_component(const std::string& text);

}  // namespace shardwise::rules::detail
