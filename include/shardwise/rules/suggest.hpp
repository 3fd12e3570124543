#pragma once
// "Did you mean" for rule authors: the nearest candidate by edit distance, when it is near enough.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shardwise::rules::detail {

// Edit distance: insertions, deletions, substitutions and swaps of adjacent characters cost 1.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `word` if it is within a third of the word's length (at least 1, at most
// 3 edits); ties go to the earlier candidate, so callers list candidates in a stable order.
std::optional<std::string> nearest(std::string_view word, const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace shardwise::rules::detail
