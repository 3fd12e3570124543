#include <shardwise/core/printable.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace shardwise {

namespace {

bool is_control(char ch) noexcept {
  const auto c = static_cast<unsigned char>(ch);
  return c < 0x20 || c == 0x7f;
}

void append_escaped(std::string& out, std::string_view text, bool keep_newlines) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char ch : text) {
    if (!is_control(ch) || (keep_newlines && ch == '\n')) {
      out += ch;
      continue;
    }
    const auto c = static_cast<unsigned char>(ch);
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
  }
}

}  // namespace

bool is_printable(std::string_view text) noexcept {
  if (text.size() < 8) return std::none_of(text.begin(), text.end(), is_control);
  // Eight bytes at a time (names are checked by the 100,000): whether a word holds a byte below
  // 0x20 or equal to 0x7f, exactly, with the borrows of "has a byte less than n" (Hacker's Delight).
  constexpr std::uint64_t kOnes = 0x0101010101010101u;
  constexpr std::uint64_t kHighBits = 0x8080808080808080u;
  const auto printable_word = [text](std::size_t at) {
    std::uint64_t word = 0;
    std::memcpy(&word, text.data() + at, 8);
    const std::uint64_t below_space = (word - kOnes * 0x20) & ~word & kHighBits;
    const std::uint64_t del = word ^ (kOnes * 0x7f);
    return (below_space | ((del - kOnes) & ~del & kHighBits)) == 0;
  };
  for (std::size_t at = 0; at + 8 < text.size(); at += 8) {
    if (!printable_word(at)) return false;
  }
  return printable_word(text.size() - 8);  // the last eight bytes (some seen already)
}

void append_printable(std::string& out, std::string_view text) {
  if (is_printable(text)) {
    out += text;
  } else {
    append_escaped(out, text, false);
  }
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_printable(out, text);
  return out;
}

std::string printable_lines(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(out, text, true);
  return out;
}

}  // namespace shardwise
