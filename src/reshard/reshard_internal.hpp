#pragma once
// Internal to reshard: the two ways to learn how a folder's tensors were cut.

#include <string>

#include <shardwise/output/manifest.hpp>
#include <shardwise/reshard/reshard.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::reshard {

// A folder whose every tensor is whole in one of its files (written at mp 1, mirrored, or in Hugging
// Face's layout), read and checked against its manifest as plan_reshard reads rank files (replicated
// copies hashed when planned): each tensor its own logical tensor, outputs[0] every one of them
// whole. For `convert --reverse` (reverse.hpp), which reads other folders through plan_reshard at mp 1.
ReshardPlan plan_whole_tensors(const std::string& from, OutsideLinks links);

// What a manifest would record for a folder without one: its rank files (named by the rules'
// output pattern, one mp), every tensor decided by `rules` (which must place each name as it is),
// its cut derived from the decision and the pieces' shapes, replicated copies and side files
// hashed. Every name that cannot be placed is reported in one Error(input). Parameters the rules
// read `from_config:` are read from the folder's own files (the side files the run copied).
output::Manifest manifest_from_rules(const std::string& from, const rules::Rules& rules,
                                     const rules::Params& given, OutsideLinks links);

}  // namespace shardwise::reshard
