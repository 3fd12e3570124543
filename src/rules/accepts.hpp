#pragma once
// The compiled `accepts:` section (Accepts::Section) and its reader, shared by the loader (which
// validates the section of every file it loads) and Accepts (which compiles the one in force).

#include <memory>
#include <string>
#include <vector>

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <shardwise/rules/accepts.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::rules {

struct CompiledRules;

// One condition: tensors whose name matches `re` (unanchored search; any name without `match`)
// and whose dtype is one of `dtypes` (any dtype when empty).
struct AcceptsCondition {
  std::string name;  // `name:`, or the condition as written (its pattern and dtypes)
  SourceLocation where;
  std::string pattern;
  std::unique_ptr<RE2> re;  // null: any name
  std::vector<st::DType> dtypes;
};

struct Accepts::Section {
  bool declared = false;
  std::vector<AcceptsCondition> require;  // each: at least one tensor
  std::vector<AcceptsCondition> forbid;   // each: no tensor
  // `defer_to:` bundled rules that, when they fit too, are chosen instead without --rules.
  std::vector<std::string> defer_to;
};

namespace detail {
class YamlReader;
// `accepts: {require: [...], forbid: [...]}` into `out`, every problem reported to `in`.
void read_accepts(YamlReader& in, const YAML::Node& node, Accepts::Section& out);
// The loader's section reader: validates the file's `accepts:` (Accepts compiles it when judging).
void check_accepts(YamlReader& in, const YAML::Node& node, CompiledRules& out);
}  // namespace detail

}  // namespace shardwise::rules
