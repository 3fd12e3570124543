// Reading a rules file's chain of parents. Which entry of which file wins is decided by the
// loader (rules.cpp): here each file is only found, read and parsed.
#include "rules/extends.hpp"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <yaml-cpp/depthguard.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/bundled.hpp>

#include <shardwise/core/io.hpp>

namespace shardwise::rules::detail {

namespace {

// Rules files are written by hand: a megabyte is generous, and it bounds what yaml-cpp (which
// recurses, and keeps every node) and the schema walk can be made to do by a hostile file.
constexpr std::size_t kMaxRulesBytes = std::size_t{1} << 20;
// A variant of a variant of bundled rules is plausible; eight files deep is a mistake.
constexpr std::size_t kMaxChain = 8;
constexpr std::string_view kBundledPrefix = "<bundled>/";

// The document, or undefined after reporting why not: text that is not UTF-8 (yaml-cpp would take
// it, and it would fail only when written into a manifest), a syntax error, or a tree that expands
// beyond the limits once its aliases are (check_expanded_size).
YAML::Node parse_yaml(std::string_view yaml, YamlReader& in) {
  if (!check_utf8(yaml, in)) return YAML::Node(YAML::NodeType::Undefined);
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (!check_expanded_size(root, in)) return YAML::Node(YAML::NodeType::Undefined);
    return root;
  } catch (const YAML::DeepRecursion& e) {
    in.error(in.where(e.mark), "YAML nested too deeply (yaml-cpp's limit is 2000 levels)");
  } catch (const YAML::ParserException& e) {
    in.error(in.where(e.mark), "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    in.error(in.where(e.mark), "cannot read YAML: " + e.msg);
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

std::unique_ptr<RulesSource> parsed(std::string display_name, std::string text) {
  auto source = std::make_unique<RulesSource>(std::move(display_name), std::move(text));
  source->root = parse_yaml(source->text, source->reader);
  return source;
}

// What identifies a file of the chain, to find cycles: the bundled name, or the file's canonical path.
std::string identity(const std::string& display_name) {
  if (display_name.starts_with(kBundledPrefix)) return display_name;
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(display_name, ec);
  return ec ? display_name : canonical.string();
}

// The parent `value` names, read and parsed; null after reporting why not at `node`.
std::unique_ptr<RulesSource> read_parent(RulesSource& child, const YAML::Node& node,
                                         const std::string& value) {
  const bool child_bundled = child.display_name.starts_with(kBundledPrefix);
  if (!is_rules_path(value)) {
    const BundledRules* bundled = find_bundled_rules(value);
    if (bundled == nullptr) {
      child.reader.error(node, "extends: " + unknown_bundled_rules(value));
      return nullptr;
    }
    return parsed(std::string(kBundledPrefix) + bundled->file_name, bundled->text);
  }
  if (child_bundled) {
    child.reader.error(node,
                       fmt::format("bundled rules extend bundled rules by name, not the path '{}'", value));
    return nullptr;
  }
  // A relative path is relative to the folder of the file that names it, not to the working directory.
  const std::filesystem::path path = std::filesystem::path(child.display_name).parent_path() / value;
  try {
    return parsed(path.string(), read_rules_file(path.string()));
  } catch (const Error& e) {
    child.reader.error(node, fmt::format("cannot extend '{}': {}", value, e.what()));
    return nullptr;
  }
}

}  // namespace

std::string read_rules_file(const std::string& path) {
  // A FIFO or a device is refused before it is read (it could block, or never end), a larger file
  // by its size.
  return io::read_regular_file(path, kMaxRulesBytes, ErrorKind::rules, "rules file");
}

std::vector<std::unique_ptr<RulesSource>> read_extends_chain(std::string_view yaml,
                                                             const std::string& display_name) {
  if (yaml.size() > kMaxRulesBytes) {
    throw Error(ErrorKind::rules, fmt::format("{}: rules file is {} bytes; at most {} are accepted",
                                              display_name, yaml.size(), kMaxRulesBytes));
  }
  std::vector<std::unique_ptr<RulesSource>> chain;
  chain.push_back(parsed(display_name, std::string(yaml)));
  std::vector<std::string> seen{identity(display_name)};
  for (;;) {
    RulesSource& child = *chain.back();
    if (!child.root.IsMap()) break;
    const YAML::Node node = YamlReader::field(child.root, "extends");
    if (!node.IsDefined()) break;
    const auto value = child.reader.string_value(node, "extends");
    if (!value) break;
    auto parent = read_parent(child, node, *value);
    if (!parent) break;
    const std::string id = identity(parent->display_name);
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) {
      child.reader.error(node, fmt::format("extends '{}' makes a cycle: {} is already in the chain", *value,
                                           parent->display_name));
      break;
    }
    if (chain.size() == kMaxChain) {
      child.reader.error(node,
                         fmt::format("extends '{}': a chain of more than {} rules files", *value, kMaxChain));
      break;
    }
    seen.push_back(id);
    chain.push_back(std::move(parent));
  }
  return chain;
}

}  // namespace shardwise::rules::detail
