#pragma once
// Internal to the planner: fused outputs (rules `fuse:`). Each part is placed first like any
// tensor (cut for its rank by its own rule); then, rank by rank, the parts of one fused output are
// taken out of the rank's tensors and replaced by the fused output, whose Composite lists them in
// order. A missing, extra, repeated or mis-shaped part is a problem naming the output and the part.

#include <cstddef>
#include <string>
#include <unordered_map>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>

#include "plan/placer.hpp"

namespace shardwise::plan::detail {

class Composer {
 public:
  // `source` (index into Plan::sources) is a part of the fused output `part` names.
  void add(std::size_t source, rules::FusePart part) { parts_.emplace(source, std::move(part)); }
  bool empty() const noexcept { return parts_.empty(); }

  // Replaces the parts on every rank of `plan` with their fused outputs (before the outputs are
  // sorted); every problem goes to `problems`.
  void compose(Plan& plan, RuleLabels& labels, Diagnostics& problems) const;

 private:
  std::unordered_map<std::size_t, rules::FusePart> parts_;
};

}  // namespace shardwise::plan::detail
