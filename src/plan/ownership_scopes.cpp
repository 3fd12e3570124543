#include "plan/ownership_scopes.hpp"

#include <algorithm>
#include <cctype>
#include <numeric>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "plan/placer.hpp"

namespace shardwise::plan::detail {
namespace {

// At most this many names in one message: a scope of hundreds of items can miss a lot.
constexpr std::size_t kMaxListed = 8;

// "ownership[items] at rules.yaml:113:5".
std::string rule_at(const rules::RuleRef& rule) {
  return rule.where.file.empty() ? rule.label : fmt::format("{} at {}", rule.label, rule.where.str());
}

// What the indices of a rule count, for messages: the rule's name ("items"), else "indices".
std::string counted(const rules::RuleRef& rule) {
  const auto open = rule.label.find('[');
  const auto close = rule.label.rfind(']');
  if (open == std::string::npos || close == std::string::npos || close <= open + 1) return "indices";
  const std::string name = rule.label.substr(open + 1, close - open - 1);
  const bool numbered = std::all_of(name.begin(), name.end(),
                                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
  return numbered ? "indices" : name;
}

std::string listed(const std::vector<std::string>& names) {
  if (names.size() <= kMaxListed) return fmt::format("{}", fmt::join(names, ", "));
  return fmt::format("{} and {} more", fmt::join(names.begin(), names.begin() + kMaxListed, ", "),
                     names.size() - kMaxListed);
}

std::string shown_rest(std::string_view rest) {
  if (rest.starts_with('.')) rest.remove_prefix(1);
  return rest.empty() ? std::string("(the indexed tensor itself)") : std::string(rest);
}

}  // namespace

std::size_t OwnershipScopes::add(const rules::Ownership& owner, std::string_view output, bool same_as_last) {
  const std::string_view name = scope_name(owner, output);
  if (!same_as_last &&
      (last_ >= scopes_.size() || scopes_[last_].rule != owner.rule || scopes_[last_].name != name)) {
    const auto key = std::pair{owner.rule, std::string(name)};
    const auto [it, fresh] = index_.try_emplace(key, scopes_.size());
    if (fresh) {
      scopes_.push_back(
          Scope{owner.rule, owner.count_param, owner.count, owner.partial, key.second, {}, std::nullopt});
      // Scopes of one rule usually hold as many tensors (a layer's experts): sized as the last one
      // instead of doubling from nothing (100,000s of members in fresh memory).
      if (scopes_.size() > 1 && scopes_[scopes_.size() - 2].rule == owner.rule)
        scopes_.back().members.reserve(scopes_[scopes_.size() - 2].members.size());
    }
    last_ = it->second;
  }
  const std::string_view rest = output.substr(owner.index_end);
  auto id = rest_ids_.find(rest);
  if (id == rest_ids_.end()) {
    id = rest_ids_.emplace(std::string(rest), static_cast<std::uint32_t>(rests_.size())).first;
    rests_.emplace_back(rest);
  }
  scopes_[last_].members.push_back(Member{owner.index, id->second});
  return last_;
}

std::string OwnershipScopes::origin(const Scope& scope) const {
  const std::string flag = rules::param_flag(scope.param);
  if (!scope.count)
    return fmt::format("{} taken from the checkpoint, as the rules say 'default: infer'", scope.param);
  if (given_.contains(scope.param)) return fmt::format("from {} {}", flag, *scope.count);
  const auto source = sources_.find(scope.param);
  if (source != sources_.end() && source->second.kind == rules::ParamSource::Kind::config)
    return fmt::format("from the checkpoint's {}", source->second.key.text());
  return fmt::format("the rules' default; give {}", flag);
}

// The indices against the count: exactly 0 .. count-1, or only below count for a partial rule.
bool OwnershipScopes::check_indices(Scope& scope, const std::vector<std::uint64_t>& indices,
                                    std::uint64_t count, Diagnostics& problems) const {
  const std::string what = counted(*scope.rule);
  if (scope.partial) {
    if (indices.back() < count) return true;
    const auto beyond =
        static_cast<std::size_t>(indices.end() - std::lower_bound(indices.begin(), indices.end(), count));
    problems.add(fmt::format("{}: {} {} of {} ({}) are out of range for {}={} ({}; {})", scope.name, beyond,
                             what, indices.size(), format_ranks(indices), scope.param, count, origin(scope),
                             rule_at(*scope.rule)));
    return false;
  }
  if (indices.size() == count && indices.back() + 1 == count) return true;
  if (!scope.count) {
    problems.add(fmt::format("{}: {} {} ({}) in the checkpoint, not numbered 0-{} ({}; {})", scope.name,
                             indices.size(), what, format_ranks(indices), indices.size() - 1, origin(scope),
                             rule_at(*scope.rule)));
  } else {
    problems.add(fmt::format("{}: {} {} ({}) in the checkpoint, but {}={} ({}; {})", scope.name,
                             indices.size(), what, format_ranks(indices), scope.param, count, origin(scope),
                             rule_at(*scope.rule)));
  }
  return false;
}

// The reference converter asserts count % mp == 0: a given count is reported once, an inferred
// one per scope.
bool OwnershipScopes::check_multiple(const Scope& scope, std::uint64_t count, Diagnostics& problems) {
  if (count % mp_ == 0) return true;
  const std::string what = counted(*scope.rule);
  if (!scope.count) {
    problems.add(fmt::format("{}: {} {} cannot be spread evenly over mp={} ({}; {})", scope.name, count, what,
                             mp_, origin(scope), rule_at(*scope.rule)));
  } else if (!reported_params_[scope.param]) {
    reported_params_[scope.param] = true;
    problems.add(
        fmt::format("{}={} is not a multiple of mp={}: the {} of {} cannot be spread evenly over the ranks "
                    "({}; {})",
                    scope.param, count, mp_, what, scope.name, origin(scope), rule_at(*scope.rule)));
  }
  return false;
}

// Every index of a scope holds the same tensors (the names after the index). Members are sorted
// by index, then by their name's place in name order (`rank`, of each entry of rests_; `by_name`
// the entries in that order): names are compared as their places, not as text.
bool OwnershipScopes::check_members(const Scope& scope, const std::vector<std::uint32_t>& rank,
                                    const std::vector<std::uint32_t>& by_name, Diagnostics& problems) const {
  std::vector<bool> seen(rests_.size());
  for (const Member& member : scope.members) seen[rank[member.rest]] = true;
  std::vector<std::uint32_t> all;  // the places of the scope's names, in name order
  for (std::uint32_t place = 0; place < seen.size(); ++place) {
    if (seen[place]) all.push_back(place);
  }
  bool ok = true;
  for (auto first = scope.members.begin(); first != scope.members.end();) {
    const auto last =
        std::find_if(first, scope.members.end(), [&](const Member& m) { return m.index != first->index; });
    std::vector<std::string> missing;
    auto held = first;
    for (const std::uint32_t place : all) {
      while (held != last && rank[held->rest] < place) ++held;
      if (held == last || rank[held->rest] != place) missing.push_back(shown_rest(rests_[by_name[place]]));
    }
    if (!missing.empty()) {
      problems.add(
          fmt::format("{}.{}: missing {} (held by other {} of the scope: {} of {} tensors present; {})",
                      scope.name, first->index, listed(missing), counted(*scope.rule),
                      all.size() - missing.size(), all.size(), rule_at(*scope.rule)));
      ok = false;
    }
    first = last;
  }
  return ok;
}

void OwnershipScopes::check(Diagnostics& problems, std::vector<std::string>& notes) {
  const std::size_t before = problems.size();
  std::map<std::string, std::map<std::uint64_t, std::vector<std::string>>>
      inferred;                                                                  // param -> count -> scopes
  std::map<const rules::RuleRef*, std::pair<std::size_t, std::size_t>> partial;  // rule -> scopes, tensors
  // Members sort by index, then by the name after it: each distinct name's place in name order,
  // found once, instead of comparing the names 100,000s of times.
  std::vector<std::uint32_t> by_name(rests_.size());
  std::iota(by_name.begin(), by_name.end(), 0U);
  std::sort(by_name.begin(), by_name.end(),
            [this](std::uint32_t a, std::uint32_t b) { return rests_[a] < rests_[b]; });
  std::vector<std::uint32_t> rank(rests_.size());
  for (std::size_t i = 0; i < by_name.size(); ++i) rank[by_name[i]] = static_cast<std::uint32_t>(i);
  for (Scope& scope : scopes_) {
    std::sort(scope.members.begin(), scope.members.end(), [&rank](const Member& a, const Member& b) {
      return a.index != b.index ? a.index < b.index : rank[a.rest] < rank[b.rest];
    });
    std::vector<std::uint64_t> indices;
    for (const Member& member : scope.members) {
      if (indices.empty() || indices.back() != member.index) indices.push_back(member.index);
    }
    const std::uint64_t count = scope.count.value_or(indices.size());
    bool ok = check_indices(scope, indices, count, problems);
    ok = check_multiple(scope, count, problems) && ok;
    if (scope.partial) {
      auto& [scopes, tensors] = partial[scope.rule];
      ++scopes;
      tensors += scope.members.size();
    } else {
      ok = check_members(scope, rank, by_name, problems) && ok;
    }
    if (!scope.count) inferred[scope.param][count].push_back(scope.name);
    if (ok) scope.checked_count = count;
  }
  if (problems.size() > before) hint_per_scope_counts(problems);
  for (const auto& [param, by_count] : inferred) {
    std::vector<std::string> counts;
    for (const auto& [count, names] : by_count) {
      counts.push_back(names.size() == 1 ? fmt::format("{} in {}", count, names.front())
                                         : fmt::format("{} in {} and {} more scopes", count, names.front(),
                                                       names.size() - 1));
    }
    notes.push_back(fmt::format("{} taken from the checkpoint, scope by scope ('default: infer'): {}", param,
                                fmt::join(counts, "; ")));
  }
  for (const auto& [rule, sizes] : partial) {
    notes.push_back(
        fmt::format("{} is partial: its {} scopes ({} tensors) are not checked for completeness, only "
                    "their indices' range",
                    rule_at(*rule), sizes.first, sizes.second));
  }
}

// A checkpoint may have scopes of different sizes under one count (16 items per block, 8 per
// extra block): say how a rules file handles that.
void OwnershipScopes::hint_per_scope_counts(Diagnostics& problems) const {
  std::map<std::pair<const rules::RuleRef*, std::string>, std::map<std::size_t, std::string>> sizes;
  for (const Scope& scope : scopes_) {
    if (!scope.count || scope.partial) continue;
    std::size_t indices = 0;
    for (std::size_t i = 0; i < scope.members.size(); ++i) {
      if (i == 0 || scope.members[i].index != scope.members[i - 1].index) ++indices;
    }
    sizes[{scope.rule, scope.param}].try_emplace(indices, scope.name);
  }
  for (const auto& [rule_param, by_size] : sizes) {
    if (by_size.size() < 2) continue;
    std::vector<std::string> examples;
    for (const auto& [size, name] : by_size) examples.push_back(fmt::format("{} in {}", size, name));
    problems.add(fmt::format(
        "{}: scopes hold different counts ({}), but one {} counts them all; a rules file can take "
        "each scope's own count from the checkpoint with `{}: {{default: infer}}` under params",
        rule_at(*rule_param.first), fmt::join(examples, ", "), rule_param.second, rule_param.second));
  }
}

}  // namespace shardwise::plan::detail
