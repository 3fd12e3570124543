#pragma once
// Internal to the planner: turns "this source goes to these ranks, sliced so" into PlannedTensors,
// and checks the numbers that decide it (owner indices, divisibility). Problems go to the
// Diagnostics; the caller keeps visiting so that one run reports everything.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::plan::detail {

// What the rules said about one placed source tensor, kept until it can be placed (packed members
// wait for the rest of their group).
struct Target {
  std::size_t source = 0;  // index into Plan::sources
  std::string output;      // output name
  std::string rule;        // rule label with its location
  rules::Split split = rules::Split::replicate;
  std::optional<rules::Ownership> owner;
};

// "table[wq] (rules.yaml:12:5)": the label plans show for a rule.
std::string rule_label(const rules::RuleRef& rule);

// A slice that covers all of `size` is the whole tensor: the converter copies it contiguously.
Slice make_slice(int dim, std::uint64_t begin, std::uint64_t end, std::uint64_t size);

// "3", "0-7", "0,2,5": ranks for messages and the text format.
std::string format_ranks(const std::vector<std::uint64_t>& ranks);

class Placer {
 public:
  Placer(Plan& plan, Diagnostics& problems, std::uint64_t mp) : plan_(plan), problems_(problems), mp_(mp) {}

  std::uint64_t mp() const noexcept { return mp_; }
  Diagnostics& problems() noexcept { return problems_; }
  const Source& source(std::size_t index) const { return plan_.sources[index]; }
  // "layers.0.x.qweight (model-00002.safetensors)": a source as messages name it.
  std::string describe(std::size_t source) const;

  // The rank that owns `owner`, or nullopt after reporting why there is none (index out of range,
  // count not a multiple of mp; the latter once per count parameter).
  std::optional<std::uint64_t> owner_rank(const rules::Ownership& owner, std::string_view tensor);

  // Adds the output tensor to `rank` (no checks: callers validated the numbers).
  void add(std::uint64_t rank, const Target& target, st::DType dtype, st::Shape shape, Slice slice, Cast cast);
  // The same whole tensor on every rank; counts the copies beyond the first as replicated.
  void add_everywhere(const Target& target, st::DType dtype, const st::Shape& shape, Cast cast);

  // Splits dim `dim` of the source into mp equal ranges; `unit` > 1 is the packing of that dim
  // (`logical` = size * unit is the dim the rules split). Returns false after reporting why the
  // split is impossible.
  bool add_split(const Target& target, int dim, std::uint64_t unit, rules::Split axis, st::DType dtype, Cast cast);

 private:
  Plan& plan_;
  Diagnostics& problems_;
  std::uint64_t mp_;
  std::set<std::string, std::less<>> reported_counts_;  // count parameters already reported
};

}  // namespace shardwise::plan::detail
