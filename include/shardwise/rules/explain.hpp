#pragma once
// Decisions in words, for `shardwise explain`: every step applied, the deciding rule with its
// FILE:LINE:COL, the output name and where it goes, or the skip and its reason, or why nothing
// matched. Knows no model: everything comes from the rules and the decision.

#include <string>

#include <shardwise/rules/rules.hpp>

namespace shardwise::rules {

// `params` as given to decide() (resolve_params), with `mp` for the rank arithmetic. With the
// Rules that decided, a tensor a transform consumes (Rules::consumer_of) is said to be consumed,
// instead of given an output and a placement it never has.
std::string explain_decision(const Decision& decision, const Params& params);
std::string explain_decision(const Rules& rules, const Decision& decision, const Params& params);

// A member as written in its layout: "SUFFIX [in/8, out] I32", "SUFFIX [in/128, out] F16|BF16 -> BF16".
std::string describe_member(const LayoutMember& member);
// "out", "in/8", "in/group_size".
std::string describe_member_dim(const MemberDim& dim);
// "[in/8, out]", "[in]".
std::string describe_member_shape(const LayoutMember& member);

}  // namespace shardwise::rules
