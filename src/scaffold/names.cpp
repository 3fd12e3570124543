// Names for the scaffold: components, keys (a module's name, or a parameter's own), and indexed
// scopes that become ownership rules. Works on generalised paths (indices replaced by a marker),
// so that `layers.3.attn` and `layers.40.attn` are one thing.
#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <re2/re2.h>

#include <shardwise/core/decimal.hpp>
#include <shardwise/core/error.hpp>

#include "scaffold/model.hpp"

namespace shardwise::scaffold {
namespace {

// A name as people can read it in a message, whatever bytes it holds.
std::string printable(std::string_view name) {
  std::string text;
  for (const char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    text += byte < 0x20 || byte == 0x7F ? fmt::format("\\x{:02x}", byte) : std::string(1, c);
  }
  return text;
}

void split_name(std::string_view name, Name& out, Diagnostics& problems) {
  const bool control = std::any_of(name.begin(), name.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7F;
  });
  if (control) {
    problems.add(fmt::format("'{}': a name with a control character cannot be written into a rules file",
                             printable(name)));
    return;
  }
  std::size_t begin = 0;
  for (;;) {
    const std::size_t dot = name.find('.', begin);
    out.parts.push_back(
        name.substr(begin, dot == std::string_view::npos ? std::string_view::npos : dot - begin));
    if (out.parts.back().empty()) {
      problems.add(
          fmt::format("'{}': component {} is empty (no key rule can capture it)", name, out.parts.size()));
      out.parts.clear();
      return;
    }
    if (dot == std::string_view::npos) break;
    begin = dot + 1;
  }
  if (out.parts.size() > 1) out.parent = name.substr(0, name.size() - out.parts.back().size() - 1);
}

// What one pass over the names learns about generalised paths.
struct PathFacts {
  std::unordered_set<std::string> containers;  // paths with a sub-module (2+ components) below them
  std::unordered_map<std::string, std::set<std::string>> children;  // path -> generalised children
  // Every `X.COLLECTION.<index>`: the collection's generalised path -> (nested in another index?).
  std::map<std::string, bool> indexed;
  // Concrete collections (name prefix up to the collection) -> (generalised path, indices seen).
  std::unordered_map<std::string_view, std::pair<std::string, std::unordered_set<std::uint64_t>>> instances;
};

void learn_paths(std::string_view name, const Name& n, PathFacts& facts) {
  std::string path;  // generalised prefix of length j
  bool seen_index = false;
  std::size_t offset = 0;  // of parts[j] in name
  for (std::size_t j = 0; j < n.parts.size(); ++j) {
    const std::string_view part = n.parts[j];
    if (j + 2 <= n.parts.size()) facts.containers.insert(path);
    const std::string child = is_index(part) ? std::string(1, kIndexMarker) : std::string(part);
    facts.children[path].insert(child);
    if (is_index(part) && j > 0 && !is_index(n.parts[j - 1])) {
      facts.indexed.try_emplace(path, false).first->second |= seen_index;
      auto& instance = facts.instances[name.substr(0, offset - 1)];
      if (instance.first.empty()) instance.first = path;
      instance.second.insert(*parse_decimal(part));  // is_index: at most 9 digits
    }
    seen_index = seen_index || is_index(part);
    if (j > 0) path += '.';
    path += child;
    offset += part.size() + 1;
  }
}

// A name for the count parameter: an identifier, distinct from the others.
std::string param_name(const std::string& collection, const std::vector<Scope>& scopes) {
  std::string name = "n_";
  for (const char c : collection) name += std::isalnum(static_cast<unsigned char>(c)) != 0 ? c : '_';
  std::string unique = name;
  for (int i = 2;
       std::any_of(scopes.begin(), scopes.end(), [&](const Scope& s) { return s.param == unique; }); ++i) {
    unique = fmt::format("{}_{}", name, i);
  }
  return unique;
}

std::vector<Scope> find_scopes(const PathFacts& facts) {
  std::map<std::string, Scope> by_collection;
  std::set<std::string> not_owned;  // collection names also indexed where they are not owned
  for (const auto& [path, nested] : facts.indexed) {
    const std::size_t dot = path.rfind('.');
    const std::string collection = path.substr(dot == std::string::npos ? 0 : dot + 1);
    const std::string parent = dot == std::string::npos ? std::string() : path.substr(0, dot);
    const auto kids = facts.children.find(parent);
    const bool siblings = kids != facts.children.end() && kids->second.size() > 1;
    if (!nested || !siblings) {
      not_owned.insert(collection);
      continue;
    }
    Scope& scope = by_collection[collection];
    scope.collection = collection;
    scope.paths.push_back(path);
  }
  for (const auto& [prefix, instance] : facts.instances) {
    const std::size_t dot = instance.first.rfind('.');
    const auto it = by_collection.find(instance.first.substr(dot == std::string::npos ? 0 : dot + 1));
    if (it == by_collection.end()) continue;
    Scope& scope = it->second;
    if (std::find(scope.paths.begin(), scope.paths.end(), instance.first) == scope.paths.end()) continue;
    const std::uint64_t largest = *std::max_element(instance.second.begin(), instance.second.end());
    scope.count = std::max(scope.count, largest + 1);
    const std::uint64_t distinct = instance.second.size();
    scope.fewest = scope.instances++ == 0 ? distinct : std::min(scope.fewest, distinct);
  }
  std::vector<Scope> scopes;
  for (auto& [collection, scope] : by_collection) {
    if (scope.count < 2) continue;  // one item is not a collection to share out
    scope.loose = not_owned.count(collection) == 0;
    scope.param = param_name(collection, scopes);
    scopes.push_back(std::move(scope));
  }
  return scopes;
}

// The scope owning a name: the first of its index components whose collection is a scope.
std::size_t owning_scope(const Name& n, const std::vector<Scope>& scopes) {
  std::string path;
  for (std::size_t j = 0; j < n.parts.size(); ++j) {
    if (is_index(n.parts[j]) && j > 0) {
      for (std::size_t s = 0; s < scopes.size(); ++s) {
        const auto& paths = scopes[s].paths;
        if (std::find(paths.begin(), paths.end(), path) != paths.end()) return s;
      }
    }
    if (j > 0) path += '.';
    path += is_index(n.parts[j]) ? std::string(1, kIndexMarker) : std::string(n.parts[j]);
  }
  return npos;
}

}  // namespace

bool is_index(std::string_view part) {
  return !part.empty() && part.size() <= 9 &&
         std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string path_regex(std::string_view generalised) {
  std::string regex;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t dot = generalised.find('.', begin);
    const std::string_view part =
        generalised.substr(begin, dot == std::string_view::npos ? dot : dot - begin);
    if (begin > 0) regex += "\\.";
    regex += part == std::string_view(&kIndexMarker, 1) ? std::string("[0-9]+") : RE2::QuoteMeta(part);
    if (dot == std::string_view::npos) return regex;
    begin = dot + 1;
  }
}

std::string path_text(std::string_view generalised) {
  std::string text(generalised);
  std::replace(text.begin(), text.end(), kIndexMarker, 'N');
  return text;
}

Names analyse_names(std::span<const TensorHeader> tensors) {
  Names out;
  out.names.resize(tensors.size());
  Diagnostics problems(ErrorKind::input);
  for (std::size_t i = 0; i < tensors.size(); ++i) split_name(tensors[i].name, out.names[i], problems);
  problems.check("cannot write rules for these tensor names");

  PathFacts facts;
  for (std::size_t i = 0; i < tensors.size(); ++i) learn_paths(tensors[i].name, out.names[i], facts);
  out.scopes = find_scopes(facts);

  std::map<std::string, std::size_t> groups;  // generalised parent -> index into out.parameters
  std::vector<std::set<std::string>> leaves;
  for (Name& n : out.names) {
    const std::size_t size = n.parts.size();
    std::string parent;
    for (std::size_t j = 0; j + 1 < size; ++j) {
      if (j > 0) parent += '.';
      parent += is_index(n.parts[j]) ? std::string(1, kIndexMarker) : std::string(n.parts[j]);
    }
    n.bare = size == 1 || is_index(n.parts[size - 2]) || facts.containers.count(parent) != 0;
    n.key = n.bare ? n.parts[size - 1] : n.parts[size - 2];
    n.scope = owning_scope(n, out.scopes);
    if (!n.bare) continue;
    const auto [it, fresh] = groups.try_emplace(parent, out.parameters.size());
    if (fresh) {
      out.parameters.push_back(ParameterGroup{parent, {}});
      leaves.emplace_back();
    }
    leaves[it->second].insert(std::string(n.key));
  }
  for (std::size_t g = 0; g < leaves.size(); ++g)
    out.parameters[g].leaves.assign(leaves[g].begin(), leaves[g].end());
  return out;
}

}  // namespace shardwise::scaffold
