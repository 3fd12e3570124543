// Rules::decide: one input name through the fixed evaluation order of docs/rules.md:
// strip prefix, rename components, reject, skip, packed member, key, table, overrides, ownership.
#include <algorithm>

#include <fmt/format.h>

#include <shardwise/core/decimal.hpp>
#include <shardwise/core/error.hpp>

#include "rules/rules_impl.hpp"

namespace shardwise::rules {

namespace {

std::string at(const RuleRef& rule) { return rule.where.str(); }

// The rule "unknown_keys[KEY]", made once per key.
const RuleRef& unknown_key_rule(const CompiledRules& rules, const std::string& key) {
  auto& made = *rules.unknown_key_rules;
  const std::lock_guard lock(made.mutex);
  auto& rule = made.by_key[key];
  if (!rule)
    rule = std::make_unique<const RuleRef>(
        RuleRef{fmt::format("unknown_keys[{}]", key), rules.unknown_keys_where});
  return *rule;
}

// Steps 1 and 2: the normalized name (and the added prefix, after the renames), into `normalized`
// (its memory reused). The steps applied are appended to `trail` unless it is null.
void normalize(const CompiledRules& rules, std::string_view name, std::vector<std::string>* trail,
               std::string& normalized) {
  for (const auto& strip : rules.strip_prefixes) {
    if (name.starts_with(strip.prefix)) {
      name.remove_prefix(strip.prefix.size());
      if (trail != nullptr) trail->push_back(strip.trail);
      break;
    }
  }
  normalized.clear();
  normalized.reserve(name.size());
  for (std::size_t start = 0;;) {
    const std::size_t dot = name.find('.', start);
    const std::string_view component =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (const RenameChain* chain = rules.rename_chain(component)) {
      for (const std::size_t index : chain->applied) {
        if (trail != nullptr) trail->push_back(rules.renames[index].trail);
      }
      normalized += chain->result;
    } else {
      normalized += component;
    }
    if (dot == std::string_view::npos) break;
    normalized += '.';
    start = dot + 1;
  }
  if (const auto& add = rules.add_prefix;
      add && !(add->except && RE2::PartialMatch(normalized, *add->except))) {
    normalized.insert(0, add->prefix);
    if (trail != nullptr) trail->push_back(add->trail);
  }
}

// The n-th capture group (1-based) of `re` searched in `text`: offset and length, or nullopt.
std::optional<std::pair<std::size_t, std::size_t>> capture(const RE2& re, std::string_view text, int group) {
  re2::StringPiece groups[16];
  const int count = group + 1;
  if (count > 16) return std::nullopt;
  const re2::StringPiece piece(text.data(), text.size());
  if (!re.Match(piece, 0, piece.size(), RE2::UNANCHORED, groups, count) || groups[group].data() == nullptr) {
    return std::nullopt;
  }
  return std::pair{static_cast<std::size_t>(groups[group].data() - text.data()), groups[group].size()};
}

// The first rule of `matcher` that matches `text` and where its group `group_of(rule)` sits (as
// capture; no group when it is negative). A single rule, as ownership usually has, is searched once
// for both; so is the first of several when `first_likely` (it is tried alone, then the set).
struct Captured {
  std::size_t index = 0;
  std::optional<std::pair<std::size_t, std::size_t>> span;
};

template <typename GroupOf>
std::optional<Captured> first_capture(const detail::OrderedMatcher& matcher, std::string_view text,
                                      const GroupOf& group_of, bool first_likely = false) {
  if ((matcher.size() == 1 || (first_likely && matcher.size() > 1)) && group_of(0) < 16) {
    re2::StringPiece groups[16];
    const int group = group_of(0);
    const re2::StringPiece piece(text.data(), text.size());
    if (matcher.pattern(0).Match(piece, 0, piece.size(), RE2::UNANCHORED, groups,
                                 group < 0 ? 0 : group + 1)) {
      if (group < 0 || groups[group].data() == nullptr) return Captured{0, std::nullopt};
      return Captured{
          0, std::pair{static_cast<std::size_t>(groups[group].data() - text.data()), groups[group].size()}};
    }
    if (matcher.size() == 1) return std::nullopt;
  }
  // Key rules and ownership decide most names.
  const auto index = matcher.first_match(text, detail::OrderedMatcher::Expect::often);
  if (!index) return std::nullopt;
  const int group = group_of(*index);
  if (group < 0) return Captured{*index, std::nullopt};
  return Captured{*index, capture(matcher.pattern(*index), text, group)};
}

// Replaces every component of `name` equal to `from` with `to`.
std::string rename_components(std::string_view name, std::string_view from, std::string_view to) {
  std::string out;
  for (std::size_t start = 0;;) {
    const std::size_t dot = name.find('.', start);
    const auto component =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    out += component == from ? to : component;
    if (dot == std::string_view::npos) break;
    out += '.';
    start = dot + 1;
  }
  return out;
}

// The decision of a name no rule places; the step is recorded when `trail` is.
void unmatched(Decision& decision, std::string reason, bool trail) {
  decision.kind = Decision::Kind::unmatched;
  decision.reason = std::move(reason);
  if (trail) decision.trail.push_back("unmatched: " + decision.reason);
}

// Step 5: the key and, for a captured key, where it sits in the normalized name.
struct FoundKey {
  std::string key;
  std::optional<std::pair<std::size_t, std::size_t>> span;
};

std::optional<FoundKey> find_key(const CompiledRules& rules, Decision& d, std::vector<std::string>* trail,
                                 std::string& why) {
  // Names come in runs that the same rule decides (a GPTQ model's packed triples): when the first key
  // rule decided the name before, it is tried alone first. This thread's last answer, for any rules:
  // it changes how many searches a name takes, never the key.
  thread_local bool first_decided_last = false;
  const auto match = first_capture(
      rules.key_matcher, d.normalized,
      [&](std::size_t i) { return rules.keys[i].literal ? -1 : rules.keys[i].key_group; },
      first_decided_last);
  first_decided_last = match && match->index == 0;
  if (!match) {
    why = fmt::format("no key rule matches '{}'", d.normalized);
    return std::nullopt;
  }
  const KeyRule& rule = rules.keys[match->index];
  FoundKey found;
  if (rule.literal) {
    found.key = *rule.literal;
  } else {
    found.span = match->span;
    if (found.span) found.key = d.normalized.substr(found.span->first, found.span->second);
    if (found.key.empty() || found.key.find('.') != std::string::npos) {
      why = fmt::format("{} ({}) captured key '{}', which is not one name component", rule.rule.label,
                        at(rule.rule), found.key);
      return std::nullopt;
    }
  }
  if (trail != nullptr) trail->push_back("key '" + found.key + rule.trail_suffix);
  return found;
}

// Step 6: the table entry for the key (into `applied`), or the unknown_keys policy. False when
// unmatched.
bool apply_table(const CompiledRules& rules, const FoundKey& found, Decision& d,
                 std::vector<std::string>* trail, std::string& why, const TableEntry*& applied) {
  const auto entry = rules.table.find(found.key);
  if (entry == rules.table.end()) {
    if (rules.unknown_keys == UnknownKeys::error) {
      // No "did you mean": the key comes from the checkpoint, which is right by definition; a near
      // table key (q_norm for k_norm) is another module, not a misspelling.
      why = fmt::format(
          "key '{}' is not in the table and unknown_keys is error (add a table entry '{}', or a "
          "skip or reject rule for the tensor)",
          found.key, found.key);
      return false;
    }
    d.rule = &unknown_key_rule(rules, found.key);
    d.split = Split::replicate;
    d.output.assign(d.normalized);
    if (trail != nullptr) {
      trail->push_back(
          fmt::format("key '{}' not in the table: unknown_keys replicate ({})", found.key, at(*d.rule)));
    }
    return true;
  }
  const TableEntry& table = entry->second;
  applied = &table;
  d.rule = &table.rule;
  d.split = table.split;
  d.output.assign(d.normalized);
  if (table.rename && *table.rename != found.key) {
    if (found.span) {
      d.output.replace(found.span->first, found.span->second, *table.rename);
    } else {
      d.output = rename_components(d.normalized, found.key, *table.rename);
    }
  }
  if (trail != nullptr) trail->push_back(table.trail);
  return true;
}

// Step 8: the owner of an indexed tensor. False when the captured index is not a number.
bool apply_ownership(const CompiledRules& rules, const Params& params, Decision& d,
                     std::vector<std::string>* trail, std::string& why) {
  const auto found = first_capture(rules.ownership_matcher, d.output,
                                   [&](std::size_t i) { return rules.ownership[i].index_group; });
  if (!found) return true;
  const OwnershipRule& rule = rules.ownership[found->index];
  const auto& span = found->span;
  const std::string text = span ? d.output.substr(span->first, span->second) : std::string();
  Ownership owner{0, std::nullopt, rule.count_param, &rule.rule, 0, 0, rule.partial};
  const std::optional<std::uint64_t> captured = parse_decimal(text);
  if (!captured) {
    why = fmt::format("{} ({}) captured index '{}', which is not a number", rule.rule.label, at(rule.rule),
                      text);
    return false;
  }
  owner.index = *captured;
  owner.index_begin = span->first;
  owner.index_end = span->first + span->second;
  if (const auto count = params.find(rule.count_param); count != params.end()) {
    owner.count = count->second;
  } else if (!rule.count_inferred) {
    throw Error(ErrorKind::usage,
                fmt::format("parameter '{}' needed by {} was not given", rule.count_param, at(rule.rule)));
  }
  d.rule = &rule.rule;
  if (trail != nullptr) {
    const std::string count =
        owner.count ? std::to_string(*owner.count) : "(each scope's count in the checkpoint)";
    trail->push_back(rule.rule.label + ": index " + text + " of " + rule.count_param + "=" + count +
                     rule.trail_suffix);
  }
  d.owner = std::move(owner);
  return true;
}

// The first transform rule whose regex matches `output` and whose `when:` holds for `params`.
std::optional<std::size_t> choose_transform(const CompiledRules& rules, std::string_view output,
                                            const Params& params) {
  // A format's transform rules usually apply to most of its weights.
  const auto first = rules.transform_matcher.first_match(output, detail::OrderedMatcher::Expect::often);
  if (!first) return std::nullopt;
  for (std::size_t i = *first; i < rules.transforms.size(); ++i) {
    const re2::StringPiece piece(output.data(), output.size());
    if (i != *first && !RE2::PartialMatch(piece, rules.transform_matcher.pattern(i))) continue;
    const auto holds = [&](const std::pair<std::string, std::uint64_t>& condition) {
      const auto it = params.find(condition.first);
      return it != params.end() && it->second == condition.second;
    };
    if (std::all_of(rules.transforms[i].when.begin(), rules.transforms[i].when.end(), holds)) return i;
  }
  return std::nullopt;
}

// `units:` of the deciding table entry or override, its parameter resolved.
void apply_units(const SplitUnits& units, const RuleRef& rule, const Params& params, Decision& d) {
  d.split_units = units.count;
  d.units_param.assign(units.param);
  if (units.param.empty()) return;
  const auto it = params.find(units.param);
  if (it == params.end()) {
    throw Error(ErrorKind::usage, fmt::format("parameter '{}' needed by {} ({}) was not given", units.param,
                                              rule.label, at(rule)));
  }
  d.split_units = it->second;
}

}  // namespace

namespace detail {
void decide_checked(const CompiledRules& rules, Decision& d, const Params& params, bool record);
}  // namespace detail

Decision Rules::decide(std::string_view name, const Params& params, Trail record) const {
  const CompiledRules& rules = *impl_;
  Decision d;
  std::vector<std::string>* trail = nullptr;
  if (record == Trail::record) {
    d.trail.reserve(8);
    trail = &d.trail;
  }
  d.source = std::string(name);
  normalize(rules, name, trail, d.normalized);
  detail::decide_checked(rules, d, params, record == Trail::record);
  return d;
}

void Rules::decide_into(std::string_view name, const Params& params, Decision& d) const {
  const CompiledRules& rules = *impl_;
  // Every field back to a new Decision's value; the strings keep their memory.
  d.kind = Decision::Kind::unmatched;
  d.source.assign(name);
  d.output.clear();
  d.reason.clear();
  d.rule = nullptr;
  d.key.reset();
  d.split = Split::replicate;
  d.owner.reset();
  d.split_units = 0;
  d.units_param.clear();
  d.fuse.reset();
  d.chunks.clear();
  d.transform = nullptr;
  d.companion_of = nullptr;
  d.layout = nullptr;
  d.member = nullptr;
  d.group.clear();
  d.trail.clear();
  normalize(rules, name, nullptr, d.normalized);
  detail::decide_checked(rules, d, params, false);
}

namespace detail {

// Steps 3 and 4, then the unfuse step or the rest.
void decide_checked(const CompiledRules& rules, Decision& d, const Params& params, bool record) {
  std::vector<std::string>* trail = record ? &d.trail : nullptr;
  if (const auto reject = rules.reject_matcher.first_match(d.normalized)) {
    const RejectRule& rule = rules.rejects[*reject];
    d.kind = Decision::Kind::reject;
    d.rule = &rule.rule;
    d.reason.assign(rule.reason);
    if (trail != nullptr) trail->push_back(rule.trail);
    return;
  }
  if (const auto skip = rules.skip_matcher.first_match(d.normalized)) {
    const SkipRule& rule = rules.skips[*skip];
    d.kind = Decision::Kind::skip;
    d.rule = &rule.rule;
    d.reason.assign(rule.reason);
    if (rule.companion_of) d.companion_of = &*rule.companion_of;
    if (trail != nullptr) trail->push_back(rule.trail);
    return;
  }
  std::string why;
  if (apply_unfuse(rules, params, d, record, why)) {
    if (!why.empty()) return unmatched(d, why, record);
    d.kind = Decision::Kind::place;
    return;
  }
  decide_normalized(rules, d, params, record);
}

void decide_normalized(const CompiledRules& rules, Decision& d, const Params& params, bool record) {
  std::vector<std::string>* trail = record ? &d.trail : nullptr;
  const auto last_dot = d.normalized.rfind('.');
  const std::string_view suffix =
      std::string_view(d.normalized).substr(last_dot == std::string::npos ? 0 : last_dot + 1);
  if (const auto member = rules.members.find(suffix);
      member != rules.members.end() && last_dot != std::string::npos) {
    d.layout = &rules.layouts[member->second.first];
    d.member = &d.layout->members[member->second.second];
    if (trail != nullptr) trail->push_back(rules.member_trails[member->second.first][member->second.second]);
  }
  std::string why;
  const auto key = find_key(rules, d, trail, why);
  if (!key) return unmatched(d, why, trail != nullptr);
  d.key = key->key;
  const TableEntry* entry = nullptr;
  if (!apply_table(rules, *key, d, trail, why, entry)) return unmatched(d, why, trail != nullptr);
  if (entry != nullptr) apply_units(entry->units, entry->rule, params, d);
  if (const auto index = rules.override_matcher.first_match(d.output)) {
    const OverrideRule& rule = rules.overrides[*index];
    d.rule = &rule.rule;
    d.split = rule.split;
    apply_units(rule.units, rule.rule, params, d);
    if (trail != nullptr) trail->push_back(rule.trail);
  }
  if (!apply_ownership(rules, params, d, trail, why)) return unmatched(d, why, trail != nullptr);
  if (d.member != nullptr) {
    const auto dot = d.output.rfind('.');
    d.group.assign(d.output, 0, dot);  // the whole name when it has no dot
    d.output.assign(d.group).append(".").append(d.member->suffix);
    if (d.owner && d.owner->index_end > d.group.size()) {
      return unmatched(
          d,
          fmt::format("{} ({}) captured its index in the last component, which a packed member's suffix "
                      "replaces",
                      d.owner->rule->label, at(*d.owner->rule)),
          trail != nullptr);
    }
  }
  if (const auto index = choose_transform(rules, d.output, params)) {
    d.transform = &rules.transforms[*index];
    if (trail != nullptr) trail->push_back(rules.transform_trails[*index]);
  }
  apply_fuse(rules, d, trail);
  d.kind = Decision::Kind::place;
}

}  // namespace detail

}  // namespace shardwise::rules
