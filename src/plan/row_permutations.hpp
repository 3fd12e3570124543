#pragma once
// Internal to the planner: the row permutations (rules `transforms:` permute_rope) a plan's tensors
// use, each checked against its tensor's rows and recorded once per rule and head count.

#include <cstdint>
#include <optional>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>

#include "plan/placer.hpp"

namespace shardwise::plan::detail {

class RowPermutations {
 public:
  RowPermutations(Plan& plan, RuleLabels& labels, const rules::Params& params)
      : plan_(plan), labels_(labels), params_(params) {}

  // The index into Plan::permutations for `source` under `rule`; nullopt after reporting why the
  // tensor's rows cannot be permuted so (no dims, rows not a multiple of the heads, an odd head
  // size, an unknown head count).
  std::optional<std::uint32_t> add(const Source& source, const rules::TransformRule& rule,
                                   Diagnostics& problems);

 private:
  Plan& plan_;
  RuleLabels& labels_;
  const rules::Params& params_;
};

}  // namespace shardwise::plan::detail
