#pragma once
// Reading the sections of a rules file into CompiledRules. Each function reports its problems to the
// reader and keeps going, so one run lists every mistake of the file.

#include <yaml-cpp/yaml.h>

#include "rules/rules_impl.hpp"
#include "rules/yaml_reader.hpp"

namespace shardwise::rules::detail {

void read_header(YamlReader& in, const YAML::Node& root, CompiledRules& out);  // shardwise, name, output, ...
void read_params(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_normalize(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_skips(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_layouts(YamlReader& in, const YAML::Node& node, CompiledRules& out);  // layouts.cpp
void read_keys(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_table(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_overrides(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_ownership(YamlReader& in, const YAML::Node& node, CompiledRules& out);
void read_transforms(YamlReader& in, const YAML::Node& node, CompiledRules& out);

// A dtype name ("F8_E4M3"), reported with a did-you-mean otherwise (layouts.cpp).
std::optional<st::DType> read_dtype(YamlReader& in, const YAML::Node& node, const std::string& what);

// "out" | "in" | "replicate", reported with a did-you-mean otherwise.
std::optional<Split> read_split(YamlReader& in, const YAML::Node& node, const std::string& what);
// A single name component: non-empty, no '.'.
bool is_component(const std::string& text);

}  // namespace shardwise::rules::detail
