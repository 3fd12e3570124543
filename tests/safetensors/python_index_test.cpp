// The index as Python's json.dump(..., indent=2) writes it (DeepSeek's fp8_cast_bf16.py). Every
// expected text below was printed by CPython 3's json module, not derived from the writer.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <shardwise/core/error.hpp>

// Internal to the safetensors step.
#include <shardwise/safetensors/python_index.hpp>

using namespace shardwise;
using st::IndexEntry;

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

TEST_CASE("python_index_json refuses a name that is not UTF-8, naming it") {
  // The strings themselves: json_escape_test.cpp.
  CHECK_THROWS_WITH(st::python_index_json({{"a\xf0\x9f", "f1"}}),
                    "tensor name is not valid UTF-8: byte 0xf0 at offset 1 (after \"a\")");
  CHECK_THROWS_WITH(st::python_index_json({{"a", "f\xff"}}),
                    "file name of a is not valid UTF-8: byte 0xff at offset 1 (after \"f\")");
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
