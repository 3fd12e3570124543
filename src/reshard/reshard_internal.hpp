#pragma once
// Internal to reshard: the two ways to learn how a folder's tensors were cut.

#include <string>

#include <shardwise/output/manifest.hpp>
#include <shardwise/reshard/reshard.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::reshard {

// A converted folder read for `convert --reverse` (reverse.hpp) as plan_reshard reads it for mp 1
// (replicated copies hashed when planned), outputs[0] every logical tensor whole, with two kinds of
// tensor reshard refuses gathered too: each part of a fused output (fused_parts.hpp) as a logical
// tensor of its own, and a split held by several ranks (rules `units:` with fewer units than ranks)
// read from the first rank of each range, the others compared with it. `whole`: every tensor is
// whole in one of the folder's files (written at mp 1, mirrored, or in Hugging Face's layout), each
// its own logical tensor.
ReshardPlan plan_reverse_gather(const std::string& from, bool whole, OutsideLinks links);

// What a manifest would record for a folder without one: its rank files (named by the rules'
// output pattern, one mp), every tensor decided by `rules` (which must place each name as it is),
// its cut derived from the decision and the pieces' shapes, replicated copies and side files
// hashed. Every name that cannot be placed is reported in one Error(input). Parameters the rules
// read `from_config:` are read from the folder's own files (the side files the run copied).
output::Manifest manifest_from_rules(const std::string& from, const rules::Rules& rules,
                                     const rules::Params& given, OutsideLinks links);

}  // namespace shardwise::reshard
