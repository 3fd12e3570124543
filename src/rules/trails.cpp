// The trail texts of every rule, formatted once at load time (see StripRule in rules_impl.hpp).
#include <fmt/format.h>

#include "rules/rules_impl.hpp"

namespace shardwise::rules::detail {

void format_trails(CompiledRules& rules) {
  for (auto& strip : rules.strip_prefixes) {
    strip.trail = fmt::format("strip prefix '{}' ({})", strip.prefix, strip.where.str());
  }
  if (rules.add_prefix) {
    rules.add_prefix->trail =
        fmt::format("add prefix '{}' ({})", rules.add_prefix->prefix, rules.add_prefix->where.str());
  }
  for (auto& rename : rules.renames) {
    rename.trail =
        fmt::format("rename component '{}' -> '{}' ({})", rename.from, rename.to, rename.where.str());
  }
  for (auto& reject : rules.rejects) {
    reject.trail = fmt::format("{}: {} ({})", reject.rule.label, reject.reason, reject.rule.where.str());
  }
  for (auto& skip : rules.skips) {
    skip.trail = fmt::format("{}: {} ({})", skip.rule.label, skip.reason, skip.rule.where.str());
  }
  rules.member_trails.clear();
  for (const auto& layout : rules.layouts) {
    auto& trails = rules.member_trails.emplace_back();
    for (const auto& member : layout.members) {
      trails.push_back(fmt::format("packed member '{}' of layout '{}' ({})", member.suffix, layout.name,
                                   layout.where.str()));
    }
  }
  for (auto& key : rules.keys)
    key.trail_suffix = fmt::format("' from {} ({})", key.rule.label, key.rule.where.str());
  for (auto& [key, entry] : rules.table) {
    entry.trail = fmt::format("{}: {}split {} ({})", entry.rule.label,
                              entry.rename ? fmt::format("rename to '{}', ", *entry.rename) : "",
                              split_name(entry.split), entry.rule.where.str());
  }
  for (auto& rule : rules.overrides) {
    rule.trail =
        fmt::format("{}: split {} ({})", rule.rule.label, split_name(rule.split), rule.rule.where.str());
  }
  rules.transform_trails.clear();
  for (const auto& rule : rules.transforms) {
    rules.transform_trails.push_back(
        fmt::format("{}: {} ({})", rule.rule.label, describe_transform(rule), rule.rule.where.str()));
  }
  for (auto& rule : rules.ownership) rule.trail_suffix = fmt::format(" ({})", rule.rule.where.str());
}

}  // namespace shardwise::rules::detail
