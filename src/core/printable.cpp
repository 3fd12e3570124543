#include <shardwise/core/printable.hpp>

#include <algorithm>
#include <cstdint>

#include <shardwise/core/byte_words.hpp>

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
  // Eight bytes at a time (names are checked by the 100,000): a byte below 0x20, or 0x7f.
  return byte_words::none_found(text, [](std::uint64_t word) {
    return byte_words::any_below(word, 0x20) | byte_words::any_equal(word, 0x7f);
  });
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
