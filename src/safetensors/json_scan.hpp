#pragma once
// A cursor over JSON text for the readers' fast paths. It reads only a plain subset of JSON:
// strings without escapes or control bytes, integers written without sign, fraction or exponent.
// Anything else is a refusal (`false`), never a message: the callers then hand the text to the
// full JSON reader, which words the error. So whatever this accepts, nlohmann reads identically.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include <shardwise/core/byte_words.hpp>

namespace shardwise::st::detail {

class JsonScanner {
 public:
  explicit JsonScanner(std::string_view text, std::size_t start = 0) : text_(text), pos_(start) {}

  // Where the next byte after whitespace is (the whitespace is consumed).
  std::size_t next_position() {
    skip_space();
    return pos_;
  }

  // Consumes `c` (after whitespace) when it is the next byte.
  bool consume(char c) {
    skip_space();
    if (pos_ == text_.size() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }

  // The next byte after whitespace, or '\0' at the end (a NUL in the text is never valid there).
  char peek() {
    skip_space();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }

  // Nothing but whitespace is left.
  bool at_end() {
    skip_space();
    return pos_ == text_.size();
  }

  // A string without escapes; `out` views its bytes in the text. Bytes above 0x7F are taken as
  // they are: the callers check beforehand that the text is valid UTF-8, as nlohmann would.
  bool string(std::string_view& out) {
    if (!consume('"')) return false;
    const std::size_t first = pos_;
    // Eight bytes at a time while none of them ends the string or refuses it (names by the 100,000
    // in headers and indexes); the bytes from the first word that may are taken one by one.
    while (text_.size() - pos_ >= 8) {
      std::uint64_t word = 0;
      std::memcpy(&word, text_.data() + pos_, 8);
      if ((byte_words::any_equal(word, '"') | byte_words::any_equal(word, '\\') |
           byte_words::any_below(word, 0x20)) != 0)
        break;
      pos_ += 8;
    }
    for (; pos_ < text_.size(); ++pos_) {
      const auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        out = text_.substr(first, pos_ - first);
        ++pos_;
        return true;
      }
      if (c == '\\' || c < 0x20) return false;  // escapes and control bytes: the full reader's job
    }
    return false;  // unterminated
  }

  // A non-negative integer that fits 64 bits, as JSON writes it (no leading zeros). A fraction or
  // exponent makes the number a float to nlohmann, and a sign or overflow a different value: all
  // are refused.
  bool uint(std::uint64_t& out) {
    skip_space();
    return digits(out);
  }

  // An integer of either sign whose magnitude fits 64 bits; its value is not kept.
  bool skip_integer() {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;  // JSON allows no space after the sign
    std::uint64_t magnitude = 0;
    return digits(magnitude);
  }

  // Consumes `word` (after whitespace) when it comes next: for the literals true, false and null.
  bool literal(std::string_view word) {
    skip_space();
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  // Digits at the cursor (no whitespace skipped), as uint() describes.
  bool digits(std::uint64_t& out) {
    const std::size_t first = pos_;
    std::uint64_t value = 0;
    for (; pos_ < text_.size() && is_digit(text_[pos_]); ++pos_) {
      const auto digit = static_cast<std::uint64_t>(text_[pos_] - '0');
      if (__builtin_mul_overflow(value, std::uint64_t{10}, &value) ||
          __builtin_add_overflow(value, digit, &value)) {
        return false;
      }
    }
    const std::size_t count = pos_ - first;
    if (count == 0 || (count > 1 && text_[first] == '0')) return false;
    if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) return false;
    out = value;
    return true;
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' || text_[pos_] == '\t')) {
      ++pos_;
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace shardwise::st::detail
