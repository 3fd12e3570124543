#pragma once
// Internal to reshard: the two ways to learn how a folder's tensors were cut.

#include <string>

#include <shardwise/output/manifest.hpp>
#include <shardwise/reshard/reshard.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::reshard {

// What a manifest would record for a folder without one: its rank files (named by the rules'
// output pattern, one mp), every tensor decided by `rules` (which must place each name as it is),
// its cut derived from the decision and the pieces' shapes, replicated copies and side files
// hashed. Every name that cannot be placed is reported in one Error(input). Parameters the rules
// read `from_config:` are read from the folder's own files (the side files the run copied).
output::Manifest manifest_from_rules(const std::string& from, const rules::Rules& rules,
                                     const rules::Params& given, OutsideLinks links);

}  // namespace shardwise::reshard
