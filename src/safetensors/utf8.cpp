#include <shardwise/safetensors/utf8.hpp>

#include <cstdint>
#include <cstring>

#include <shardwise/core/parallel.hpp>

namespace shardwise::st::detail {

std::size_t utf8_sequence(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) {
    return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0u;
  };
  const unsigned b0 = byte(0);
  const auto in = [](unsigned b, unsigned lo, unsigned hi) { return b >= lo && b <= hi; };
  if (b0 < 0x80) return 1;
  if (in(b0, 0xC2, 0xDF)) return in(byte(1), 0x80, 0xBF) ? 2 : 0;
  if (in(b0, 0xE0, 0xEF)) {
    const unsigned lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) ? 3 : 0;
  }
  if (in(b0, 0xF0, 0xF4)) {
    const unsigned lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

namespace {

// True when none of the eight bytes of `word` is NUL or has its high bit set (plain ASCII).
bool plain_ascii(std::uint64_t word) {
  constexpr std::uint64_t kLow = 0x0101010101010101, kHigh = 0x8080808080808080;
  const bool has_zero = ((word - kLow) & ~word & kHigh) != 0;
  return (word & kHigh) == 0 && !has_zero;
}

}  // namespace

std::size_t first_bad_byte(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    std::uint64_t word = 0;
    if (text.size() - i >= sizeof word) {
      std::memcpy(&word, text.data() + i, sizeof word);
      if (plain_ascii(word)) {
        i += sizeof word;
        continue;
      }
    }
    if (text[i] == '\0') return i;
    const std::size_t n = utf8_sequence(text, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// The halves meet at an ASCII byte, which a valid sequence holds only as its first byte: a scan of
// the whole text comes to it exactly where the second half's scan starts, unless it stops before
// at a bad byte, which the first half's scan stops at too (a sequence cut short by the halves' seam
// is bad in both, the ASCII byte after it being no continuation byte).
std::size_t first_bad_byte(std::string_view text, std::size_t split_from) {
  std::size_t split = text.size() / 2;
  while (split < text.size() && static_cast<unsigned char>(text[split]) >= 0x80) ++split;
  if (text.size() < split_from || split == text.size()) return first_bad_byte(text);
  std::size_t first = std::string_view::npos;
  std::size_t rest = std::string_view::npos;
  run_beside([&] { first = first_bad_byte(text.substr(0, split)); },
             [&] { rest = first_bad_byte(text.substr(split)); });
  if (first != std::string_view::npos || rest == std::string_view::npos) return first;
  return split + rest;
}

}  // namespace shardwise::st::detail
