// Looking up the bundled rules by name, and telling a name from a path.
#include <shardwise/rules/bundled.hpp>

#include <algorithm>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/error.hpp>

#include <shardwise/rules/suggest.hpp>

namespace shardwise::rules {

const BundledRules* find_bundled_rules(std::string_view name) {
  const auto& all = bundled_rules();
  const auto it =
      std::find_if(all.begin(), all.end(), [&](const BundledRules& entry) { return entry.name == name; });
  return it == all.end() ? nullptr : &*it;
}

bool is_rules_path(std::string_view value) {
  return value.find('/') != std::string_view::npos || value.ends_with(".yaml") || value.ends_with(".yml");
}

std::string unknown_bundled_rules(std::string_view name) {
  std::vector<std::string> names;
  for (const auto& entry : bundled_rules()) names.push_back(entry.name);
  return fmt::format(
      "no bundled rules named '{}'{}; bundled: {} (`shardwise rules list`). A rules file is "
      "given by a path with a '/' or a .yaml ending (e.g. ./{})",
      name, detail::did_you_mean(name, names), fmt::join(names, ", "), name);
}

Rules load_named_rules(const std::string& value) {
  if (is_rules_path(value)) return Rules::load_file(value);
  const BundledRules* bundled = find_bundled_rules(value);
  if (bundled == nullptr) throw Error(ErrorKind::usage, unknown_bundled_rules(value));
  return load_bundled_rules(*bundled);
}

namespace {

struct LoadedBundledRules {
  std::mutex mutex;
  std::map<const BundledRules*, Rules> by_file;
};

LoadedBundledRules& loaded_bundled_rules() {
  static LoadedBundledRules loaded;
  return loaded;
}

}  // namespace

Rules load_bundled_rules(const BundledRules& bundled) {
  LoadedBundledRules& loaded = loaded_bundled_rules();
  const std::lock_guard lock(loaded.mutex);
  if (const auto it = loaded.by_file.find(&bundled); it != loaded.by_file.end()) return it->second;
  Rules rules = Rules::load_text(bundled.text, "<bundled>/" + bundled.file_name);
  loaded.by_file.emplace(&bundled, rules);
  return rules;
}

void release_loaded_bundled_rules() {
  LoadedBundledRules& loaded = loaded_bundled_rules();
  const std::lock_guard lock(loaded.mutex);
  loaded.by_file.clear();
}

}  // namespace shardwise::rules
