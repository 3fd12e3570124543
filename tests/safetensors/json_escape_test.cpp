// JSON strings as serde_json (safetensors headers) and Python's json.dumps (ensure_ascii=True)
// write them. Every expected text was printed by the library itself, not derived from ours:
// - serde_json: serde_json 1.0.87 (Debian's librust-serde-json-dev), serde_json::to_string(s);
// - Python: CPython 3.11's json.dumps(s).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <shardwise/core/error.hpp>

// Internal to the safetensors step.
#include "safetensors/json_escape.hpp"

using namespace shardwise;

namespace {

std::string serde(std::string_view s) {
  std::string out;
  st::append_serde_json_string(out, s, "name");
  return out;
}

std::string python(std::string_view s) {
  std::string out;
  st::append_python_json_string(out, s, "name");
  return out;
}

}  // namespace

TEST_CASE("json strings: serde_json keeps UTF-8, Python escapes it, both escape controls alike") {
  struct Case {
    std::string input;
    std::string serde_json;
    std::string python;
  };
  const std::vector<Case> cases = {
      {"plain.weight", R"("plain.weight")", R"("plain.weight")"},
      {"caf\xc3\xa9", "\"caf\xc3\xa9\"", R"("caf\u00e9")"},               // U+00E9
      {"\xe4\xb8\xad", "\"\xe4\xb8\xad\"", R"("\u4e2d")"},                // U+4E2D
      {"\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"", R"("\ud83d\ude00")"},  // U+1F600: a pair
      {"\xe2\x80\xa8", "\"\xe2\x80\xa8\"", R"("\u2028")"},                // U+2028
      {"a\x01"
       "b",
       R"("a\u0001b")", R"("a\u0001b")"},
      {std::string("\0", 1), R"("\u0000")", R"("\u0000")"},
      {"x\x1f", R"("x\u001f")", R"("x\u001f")"},
      {"t\tn\nr\rb\bf\f", R"("t\tn\nr\rb\bf\f")", R"("t\tn\nr\rb\bf\f")"},
      {"q\"q", R"("q\"q")", R"("q\"q")"},
      {"b\\s", R"("b\\s")", R"("b\\s")"},
      {"s/l", R"("s/l")", R"("s/l")"},
      {"del\x7f", "\"del\x7f\"", R"("del\u007f")"},
      {" ~", R"(" ~")", R"(" ~")"},
      {"\xdf\xbf", "\"\xdf\xbf\"", R"("\u07ff")"},                           // the last two-byte code point
      {"\xe0\xa0\x80", "\"\xe0\xa0\x80\"", R"("\u0800")"},                   // the first three-byte one
      {"\xef\xbf\xbf", "\"\xef\xbf\xbf\"", R"("\uffff")"},                   // the last of the BMP
      {"\xf0\x90\x80\x80", "\"\xf0\x90\x80\x80\"", R"("\ud800\udc00")"},     // U+10000
      {"\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"", R"("\udbff\udfff")"},     // U+10FFFF
      {"\xf0\x9f\x98\x80x", "\"\xf0\x9f\x98\x80x\"", R"("\ud83d\ude00x")"},  // then ASCII
      {"", R"("")", R"("")"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.python);
    CHECK(serde(c.input) == c.serde_json);
    CHECK(python(c.input) == c.python);
  }
}

TEST_CASE("json strings: both append to what is there") {
  std::string out = "{";
  st::append_serde_json_string(out, "a", "key");
  out += ':';
  st::append_python_json_string(out, "\xc3\xa9", "value");
  CHECK(out == R"({"a":"\u00e9")");
}

TEST_CASE("json strings: text that is not UTF-8 is an input error naming it, in either dialect") {
  struct Bad {
    std::string input;
    std::string message;
  };
  const std::vector<Bad> cases = {
      {"bad\xff", "name is not valid UTF-8: byte 0xff at offset 3 (after \"bad\")"},
      {"a\xf0\x9f", "name is not valid UTF-8: byte 0xf0 at offset 1 (after \"a\")"},        // truncated
      {"\xed\xa0\x80", "name is not valid UTF-8: byte 0xed at offset 0 (after \"\")"},      // a surrogate
      {"\xc0\xaf", "name is not valid UTF-8: byte 0xc0 at offset 0 (after \"\")"},          // overlong '/'
      {"\xf4\x90\x80\x80", "name is not valid UTF-8: byte 0xf4 at offset 0 (after \"\")"},  // above U+10FFFF
      {"x\x80", "name is not valid UTF-8: byte 0x80 at offset 1 (after \"x\")"},  // a stray continuation
  };
  for (const Bad& c : cases) {
    INFO(c.message);
    for (const auto write : {&serde, &python}) {
      try {
        write(c.input);
        FAIL("no error");
      } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::input);
        CHECK(std::string(e.what()) == c.message);
      }
    }
  }
}
