// The one escaping of the text views: control bytes as \xNN, everything else (UTF-8 included) kept.
#include <shardwise/core/printable.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace shardwise {
namespace {

TEST_CASE("printable: control bytes escaped, other bytes kept") {
  struct Case {
    std::string in;
    std::string out;
  };
  const Case cases[] = {
      {"layers.0.attn.wq_a.weight", "layers.0.attn.wq_a.weight"},
      {"", ""},
      {"a\x1b[31m.weight", "a\\x1b[31m.weight"},
      {"t\x1b]0;title\x07", "t\\x1b]0;title\\x07"},
      {std::string("nul\0x", 5), "nul\\x00x"},
      {"tab\tnew\nline\rdel\x7f", "tab\\x09new\\x0aline\\x0ddel\\x7f"},
      {"caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac"},  // UTF-8 as is
      {"back\\slash", "back\\slash"},
  };
  for (const Case& c : cases) {
    INFO(c.in);
    CHECK(printable(c.in) == c.out);
    CHECK(is_printable(c.in) == (c.in == c.out));
    std::string appended = "> ";
    append_printable(appended, c.in);
    CHECK(appended == "> " + c.out);
  }
}

TEST_CASE("is_printable: every byte value, at every place of a long text, one among printable neighbours") {
  // The text is checked eight bytes at a time, then byte by byte: both the word's lanes and the
  // tail must see a control byte, whatever printable bytes (0x20, 0x7e, 0x80, 0xff) surround it.
  for (const char fill : {'\x20', '\x7e', '\x80', '\xff', 'a'}) {
    for (int value = 0; value < 256; ++value) {
      const bool control = value < 0x20 || value == 0x7f;
      for (std::size_t at = 0; at < 19; ++at) {
        std::string text(19, fill);
        text[at] = static_cast<char>(value);
        INFO("byte " << value << " at " << at << " among "
                     << static_cast<int>(static_cast<unsigned char>(fill)));
        REQUIRE(is_printable(text) == !control);
      }
    }
  }
}

TEST_CASE("printable_lines: line breaks kept, every other control byte escaped") {
  CHECK(printable_lines("first a\x1b[2J\nsecond\x07\n") == "first a\\x1b[2J\nsecond\\x07\n");
}

}  // namespace
}  // namespace shardwise
