// The index as Python's json.dump(..., indent=2) writes it (DeepSeek's fp8_cast_bf16.py). Every
// expected text below was printed by CPython 3's json module, not derived from the writer.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <shardwise/core/error.hpp>

// Internal to the safetensors step.
#include "safetensors/python_index.hpp"

using namespace shardwise;
using st::IndexEntry;

TEST_CASE("python_json_string escapes as json.dumps with ensure_ascii") {
  struct Case {
    std::string input;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"plain.weight", R"("plain.weight")"},
      {"q\"uote", R"("q\"uote")"},
      {"back\\slash", R"("back\\slash")"},
      {std::string("\0\x01\x1f", 3), R"("\u0000\u0001\u001f")"},
      {"\b\f\n\r\t", R"("\b\f\n\r\t")"},
      {"\x7f", R"("\u007f")"},
      {" ~/", R"(" ~/")"},
      {"\xc3\xa9", R"("\u00e9")"},                    // U+00E9, two bytes
      {"\xdf\xbf", R"("\u07ff")"},                    // the last two-byte code point
      {"\xe0\xa0\x80", R"("\u0800")"},                // the first three-byte one
      {"\xef\xbf\xbf", R"("\uffff")"},                // the last of the BMP
      {"\xf0\x90\x80\x80", R"("\ud800\udc00")"},      // U+10000: a surrogate pair
      {"\xf4\x8f\xbf\xbf", R"("\udbff\udfff")"},      // U+10FFFF
      {"\xf0\x9f\x98\x80x", R"("\ud83d\ude00x")"},    // U+1F600 then ASCII
  };
  for (const Case& c : cases) {
    CAPTURE(c.expected);
    CHECK(st::python_json_string(c.input) == c.expected);
  }
}

TEST_CASE("python_json_string never reads past a truncated sequence") {
  // Not valid UTF-8 (the index reader refuses it before); the writer must still stop.
  CHECK(st::python_json_string("a\xf0\x9f") == R"("a\u00f0\u009f")");
}

TEST_CASE("python_index_json writes json.dump({metadata: {}, weight_map}, indent=2)") {
  const std::vector<IndexEntry> map = {{"z.weight", "model-00002-of-00002.safetensors"},
                                       {"a.weight", "model-00001-of-00002.safetensors"},
                                       {"caf\xc3\xa9", "f\"1"}};
  CHECK(st::python_index_json(map) ==
        "{\n  \"metadata\": {},\n  \"weight_map\": {\n"
        "    \"z.weight\": \"model-00002-of-00002.safetensors\",\n"
        "    \"a.weight\": \"model-00001-of-00002.safetensors\",\n"
        "    \"caf\\u00e9\": \"f\\\"1\"\n  }\n}");
  CHECK(st::python_index_json({}) == "{\n  \"metadata\": {},\n  \"weight_map\": {}\n}");
}

TEST_CASE("read_weight_map_in_order keeps the file's order and decodes escapes") {
  const std::string text =
      R"({"metadata": {"total_size": 12}, "weight_map": {"b": "f2", "a": "f1", "\u00e9\ud83d\ude00": "f1"}})";
  const std::vector<IndexEntry> expected = {{"b", "f2"}, {"a", "f1"}, {"\xc3\xa9\xf0\x9f\x98\x80", "f1"}};
  CHECK(st::read_weight_map_in_order(text, "idx.json") == expected);
  // Round trip through the writer: the order survives.
  CHECK(st::python_index_json(st::read_weight_map_in_order(text, "idx.json")) ==
        "{\n  \"metadata\": {},\n  \"weight_map\": {\n    \"b\": \"f2\",\n    \"a\": \"f1\",\n"
        "    \"\\u00e9\\ud83d\\ude00\": \"f1\"\n  }\n}");
}

TEST_CASE("read_weight_map_in_order refuses what is not an index") {
  struct Bad {
    std::string text;
    std::string message;
  };
  const std::vector<Bad> bad = {
      {"{", "idx.json: not valid JSON"},
      {"[]", "idx.json: no \"weight_map\" object"},
      {R"({"weight_map": []})", "idx.json: no \"weight_map\" object"},
      {R"({"weight_map": {"a": 1}})", "idx.json: weight_map[a] is not a file name"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.text);
    try {
      st::read_weight_map_in_order(b.text, "idx.json");
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK_THAT(e.what(), Catch::Contains(b.message));
    }
  }
}
