#pragma once
// The witnesses of many `accepts:` conditions found in one pass over a checkpoint's tensors: each
// name searched once for every regex still needed (an RE2::Set), not once per condition. Choosing
// among the bundled rules judges all their conditions against 100,000s of names, and the
// conditions a checkpoint does not meet are searched in every name.

#include <cstddef>
#include <span>
#include <vector>

#include <shardwise/rules/tensor_header.hpp>

#include "rules/accepts.hpp"

namespace shardwise::rules::detail {

// The first tensor a condition holds for (its name matches and its dtype is one of the
// condition's), and the first whose name matches though its dtype does not (for a message).
struct Witnesses {
  const TensorHeader* holds = nullptr;
  const TensorHeader* name_only = nullptr;
};

// One entry per condition, in order: the same answers as searching the tensors with each condition
// alone. The pass stops once every condition holds for some tensor. A list of `split_from` tensors
// or more is searched in two halves on two threads (the conditions a checkpoint does not meet are
// searched in all of its 100,000s of names), with the same answers; tests give a small `split_from`.
inline constexpr std::size_t kSplitFrom = std::size_t{1} << 16;
std::vector<Witnesses> find_witnesses(std::span<const AcceptsCondition* const> conditions,
                                      std::span<const TensorHeader> tensors,
                                      std::size_t split_from = kSplitFrom);

}  // namespace shardwise::rules::detail
