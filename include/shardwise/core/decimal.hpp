#pragma once
// Numbers written as text (command-line values, rules files, tensor and file names): one parser,
// checked, for every place that reads one.

#include <cstdint>
#include <optional>
#include <string_view>

namespace shardwise {

// The whole of `text` as an unsigned decimal number: digits only (no sign, no spaces, leading
// zeros allowed), at most 2^64-1. nullopt for anything else, an empty text or an overflow included.
std::optional<std::uint64_t> parse_decimal(std::string_view text) noexcept;

}  // namespace shardwise
