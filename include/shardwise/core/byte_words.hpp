#pragma once
// Byte tests on eight bytes at once, for scanning names by the 100,000 (the borrows of Hacker's
// Delight's "has a byte less than n": exact for whether some byte is, not for which).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace shardwise::byte_words {

inline constexpr std::uint64_t kOnes = 0x0101010101010101u;
inline constexpr std::uint64_t kHighBits = 0x8080808080808080u;

// Nonzero when a byte of `word` is below `n` (n at most 0x80).
constexpr std::uint64_t any_below(std::uint64_t word, std::uint8_t n) noexcept {
  return (word - kOnes * n) & ~word & kHighBits;
}
// Nonzero when a byte of `word` equals `c`.
constexpr std::uint64_t any_equal(std::uint64_t word, std::uint8_t c) noexcept {
  return any_below(word ^ (kOnes * c), 1);
}

// Whether `found(word)` is zero for every eight bytes of `text`, which has at least eight: the last
// word is its last eight bytes (some of them tested already).
template <typename Found>
bool none_found(std::string_view text, const Found& found) noexcept {
  const auto word_at = [text](std::size_t at) {
    std::uint64_t word = 0;
    std::memcpy(&word, text.data() + at, 8);
    return word;
  };
  for (std::size_t at = 0; at + 8 < text.size(); at += 8) {
    if (found(word_at(at)) != 0) return false;
  }
  return found(word_at(text.size() - 8)) == 0;
}

}  // namespace shardwise::byte_words
