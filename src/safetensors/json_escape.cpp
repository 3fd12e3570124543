#include "safetensors/json_escape.hpp"

#include <cstdint>
#include <iterator>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

#include <shardwise/safetensors/utf8.hpp>

namespace shardwise::st {

namespace {

// What the writer does with a code point from U+007F up: copy its UTF-8 bytes or write \uXXXX.
enum class NonAscii { raw, escaped };

// The code point of the valid `length`-byte UTF-8 sequence at `text[i]`.
std::uint32_t decode(std::string_view text, std::size_t i, std::size_t length) {
  const auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(text[i + k]));
  };
  if (length == 1) return byte(0);
  std::uint32_t cp = byte(0) & (0x7Fu >> static_cast<unsigned>(length));
  for (std::size_t k = 1; k < length; ++k) cp = (cp << 6) | (byte(k) & 0x3F);
  return cp;
}

void append_u_escape(std::string& out, std::uint32_t unit) {
  fmt::format_to(std::back_inserter(out), "\\u{:04x}", unit);
}

// The short escape of `cp` (`n` for a line feed), or 0 when it has none.
char short_escape(std::uint32_t cp) {
  switch (cp) {
    case '"':
      return '"';
    case '\\':
      return '\\';
    case '\b':
      return 'b';
    case '\f':
      return 'f';
    case '\n':
      return 'n';
    case '\r':
      return 'r';
    case '\t':
      return 't';
    default:
      return 0;
  }
}

void append_json_string(std::string& out, std::string_view utf8, std::string_view what, NonAscii non_ascii) {
  out += '"';
  for (std::size_t i = 0; i < utf8.size();) {
    const std::size_t length = detail::utf8_sequence(utf8, i);
    if (length == 0) {
      throw Error(ErrorKind::input,
                  fmt::format("{} is not valid UTF-8: byte 0x{:02x} at offset {} (after \"{}\")", what,
                              static_cast<unsigned char>(utf8[i]), i, utf8.substr(0, i)));
    }
    const std::uint32_t cp = decode(utf8, i, length);
    if (const char escape = short_escape(cp)) {
      out += '\\';
      out += escape;
    } else if (cp < 0x20) {
      append_u_escape(out, cp);
    } else if (cp < 0x7F || non_ascii == NonAscii::raw) {
      out.append(utf8, i, length);
    } else if (cp <= 0xFFFF) {
      append_u_escape(out, cp);
    } else {
      const std::uint32_t v = cp - 0x10000;
      append_u_escape(out, 0xD800 | (v >> 10));
      append_u_escape(out, 0xDC00 | (v & 0x3FF));
    }
    i += length;
  }
  out += '"';
}

}  // namespace

void append_serde_json_string(std::string& out, std::string_view utf8, std::string_view what) {
  append_json_string(out, utf8, what, NonAscii::raw);
}

void append_python_json_string(std::string& out, std::string_view utf8, std::string_view what) {
  append_json_string(out, utf8, what, NonAscii::escaped);
}

}  // namespace shardwise::st
