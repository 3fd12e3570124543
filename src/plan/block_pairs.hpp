#pragma once
// Internal to the planner: the block-scaled transforms (dequantize, requantize) read a second
// source, the weight's block scale. Once every tensor is placed (and each rank's tensors are sorted
// by name), each such tensor finds its companion by the rule's name template, on its own rank (by
// output name) or in the checkpoint (by input name), and the pair is checked against the block
// grid: the companion's dtype and shape, and slices of whole blocks that match each other.

#include <cstdint>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/placer.hpp"

namespace shardwise::plan::detail {

class BlockPairs {
 public:
  // The index a tensor placed with `rule` carries in Target::pending_transform.
  std::uint32_t pending(const rules::TransformRule& rule);
  bool empty() const noexcept { return rules_.empty(); }

  // Resolves every pending transform of `plan` into Plan::companions: companions consumed by a
  // dequantization are removed from their rank; a dequantization without its scale and `missing:
  // keep` is written unchanged (with a note); anything else that does not fit is a problem.
  void resolve(Plan& plan, const st::Checkpoint& checkpoint, RuleLabels& labels, Diagnostics& problems) const;

 private:
  std::vector<const rules::TransformRule*> rules_;
};

}  // namespace shardwise::plan::detail
