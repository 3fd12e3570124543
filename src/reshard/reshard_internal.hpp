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
// hashed. Every name that cannot be placed is reported in one Error(input).
output::Manifest manifest_from_rules(const std::string& from, const rules::Rules& rules,
                                     const rules::Params& given);

}  // namespace shardwise::reshard
