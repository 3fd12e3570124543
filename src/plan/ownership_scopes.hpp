#pragma once
// Internal to the planner: the tensors each ownership rule owns, grouped by *scope* (the output
// name up to the captured index: `blocks.3.mlp.items`), checked against the count once every
// tensor was seen. A count that does not fit the checkpoint would put whole tensors on the wrong
// rank with nothing else to notice it, so in every scope:
//   - the indices are exactly 0 .. count-1, and every index holds the same tensors (the names
//     after the index), unless the rule says `partial: true` (then only index < count);
//   - the count is a multiple of mp.
// A parameter declared `default: infer` and not given counts each scope on its own.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::plan::detail {

class OwnershipScopes {
 public:
  // `given` are the parameters given on the command line (the others are the rules' defaults or,
  // in `sources`, read from the checkpoint's files), for messages that say where a wrong count
  // came from.
  OwnershipScopes(rules::Params given, std::uint64_t mp,
                  std::map<std::string, rules::ParamSource> sources = {})
      : given_(std::move(given)), mp_(mp), sources_(std::move(sources)) {}

  // Records one owned tensor by its final output name; returns its scope, for count().
  // `same_as_last`: the tensor is of the scope of the last one added (known to the caller without
  // comparing names), which is then not looked up.
  std::size_t add(const rules::Ownership& owner, std::string_view output, bool same_as_last = false);
  // The scope's name in `output`, an owned tensor's output name: before its index, without the dot.
  static std::string_view scope_name(const rules::Ownership& owner, std::string_view output) {
    std::string_view name = output.substr(0, owner.index_begin);
    if (name.ends_with('.')) name.remove_suffix(1);
    return name;
  }

  // Reports every problem of every scope to `problems`, and adds to `notes` what the plan must
  // say (counts taken from the checkpoint, partial rules).
  void check(Diagnostics& problems, std::vector<std::string>& notes);

  // The count of a scope before check(), when it is given (not inferred), a multiple of mp and
  // above `index`: a tensor of that index can be placed at once.
  std::optional<std::uint64_t> known_count(std::size_t scope, std::uint64_t index) const {
    const std::optional<std::uint64_t>& count = scopes_[scope].count;
    if (!count || *count == 0 || *count % mp_ != 0 || index >= *count) return std::nullopt;
    return count;
  }
  // The count of a scope that passed check(); nullopt for one that did not.
  std::optional<std::uint64_t> count(std::size_t scope) const { return scopes_[scope].checked_count; }

 private:
  struct Member {
    std::uint64_t index = 0;
    std::uint32_t rest = 0;  // index into rests_: the output name after the index (".w2.zeros")
  };
  struct Scope {
    const rules::RuleRef* rule = nullptr;
    std::string param;
    std::optional<std::uint64_t> count;  // none: inferred
    bool partial = false;
    std::string name;  // without the dot before the index
    std::vector<Member> members;
    std::optional<std::uint64_t> checked_count;
  };

  // "--n-items 16" / "the rules' default, give --n-items" / "taken from the checkpoint".
  std::string origin(const Scope& scope) const;
  bool check_indices(Scope& scope, const std::vector<std::uint64_t>& indices, std::uint64_t count,
                     Diagnostics& problems) const;
  bool check_multiple(const Scope& scope, std::uint64_t count, Diagnostics& problems);
  bool check_members(const Scope& scope, const std::vector<std::uint32_t>& rank,
                     const std::vector<std::uint32_t>& by_name, Diagnostics& problems) const;
  void hint_per_scope_counts(Diagnostics& problems) const;

  rules::Params given_;
  std::uint64_t mp_;
  std::map<std::string, rules::ParamSource> sources_;
  std::vector<Scope> scopes_;  // in order of first appearance
  std::map<std::pair<const rules::RuleRef*, std::string>, std::size_t, std::less<>> index_;
  // The names after the index, each once: 100,000s of members share a few (".w1.weight").
  std::vector<std::string> rests_;
  std::map<std::string, std::uint32_t, std::less<>> rest_ids_;
  std::size_t last_ = 0;  // the scope of the previous tensor: owned tensors come scope by scope
  std::map<std::string, bool> reported_params_;  // count parameters already reported not a multiple of mp
};

}  // namespace shardwise::plan::detail
