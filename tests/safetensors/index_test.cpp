// Reading model.safetensors.index.json: the fast path against the full path, which stays the
// reference: the same WeightMap on valid indexes, the same message on malformed ones.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <shardwise/core/error.hpp>

// Internal to the reader.
#include "safetensors/index.hpp"

using namespace shardwise;
using namespace shardwise::st::detail;

namespace {

// A WeightMap as (tensor, file) pairs in its order, and its files.
using Pairs = std::vector<std::pair<std::string, std::string>>;
Pairs pairs(const WeightMap& map) {
  Pairs out;
  for (const auto& e : map.tensors) out.emplace_back(map.name(e), map.files.at(e.file));
  return out;
}

enum class Path { fast, full };

struct ValidIndex {
  const char* what;
  std::string text;
  Pairs expected;
  Path path;
};

std::vector<ValidIndex> valid_indexes() {
  return {
      {"typical",
       R"({"metadata": {"total_size": 16}, "weight_map": {"a": "m1.safetensors", "b": "m2.safetensors"}})",
       {{"a", "m1.safetensors"}, {"b", "m2.safetensors"}},
       Path::fast},
      {"unsorted, files out of order",
       "{\n  \"weight_map\": {\n    \"z\": \"m2.safetensors\",\n    \"layers.2.w\": \"m1.safetensors\",\n"
       "    \"layers.10.w\": \"m2.safetensors\"\n  },\n  \"metadata\": {}\n}\n",
       {{"layers.10.w", "m2.safetensors"}, {"layers.2.w", "m1.safetensors"}, {"z", "m2.safetensors"}},
       Path::fast},
      {"empty weight_map", R"({"weight_map":{}})", {}, Path::fast},
      {"other keys of every plain kind",
       R"({"metadata":{"total_size":833968172664,"n":-5,"z":-0,"list":[1,"x",true,false,null,[],{}],"o":{"o":{"o":[]}}},)"
       R"("format":"pt","weight_map":{"a":"m.safetensors"}})",
       {{"a", "m.safetensors"}},
       Path::fast},
      {"UTF-8 names",
       "{\"weight_map\":{\"\xC3\xA9t\xC3\xA9\":\"f\xC3\xA9.safetensors\",\"a\":\"f\xC3\xA9.safetensors\"}}",
       {{"a", "f\xC3\xA9.safetensors"}, {"\xC3\xA9t\xC3\xA9", "f\xC3\xA9.safetensors"}},
       Path::fast},
      {"escape in a name",
       R"({"weight_map":{"caf\u00e9":"m.safetensors"}})",
       {{"caf\xC3\xA9", "m.safetensors"}},
       Path::full},
      {"escape in metadata",
       R"({"metadata":{"note":"a\"b"},"weight_map":{"a":"m.safetensors"}})",
       {{"a", "m.safetensors"}},
       Path::full},
      {"float in metadata",
       R"({"metadata":{"x":1.5},"weight_map":{"a":"m.safetensors"}})",
       {{"a", "m.safetensors"}},
       Path::full},
      {"a repeated key outside weight_map",
       R"({"metadata":{"x":1},"metadata":{"y":2},"weight_map":{"a":"m.safetensors"}})",
       {{"a", "m.safetensors"}},
       Path::full},
      {"nested deeper than the fast path looks",
       R"({"d":[[[[[[[[[[[[1]]]]]]]]]]]],"weight_map":{"a":"m.safetensors"}})",
       {{"a", "m.safetensors"}},
       Path::full},
  };
}

std::string error_of(WeightMap (*parse)(std::string_view, const std::string&), const std::string& text) {
  try {
    parse(text, "model.safetensors.index.json");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("on valid indexes the fast path gives the full path's WeightMap, or declines") {
  for (const auto& c : valid_indexes()) {
    INFO(c.what);
    const WeightMap full = parse_index_full(c.text, "model.safetensors.index.json");
    CHECK(pairs(full) == c.expected);
    IndexText text = index_text(c.text);
    const std::optional<WeightMap> fast = parse_index_fast(text);
    CHECK(fast.has_value() == (c.path == Path::fast));
    if (fast) {
      CHECK(pairs(*fast) == c.expected);
      CHECK(fast->files == full.files);
    } else {
      CHECK(text.view() == c.text);  // left for the full path
    }
    const WeightMap chosen = parse_index(c.text, "model.safetensors.index.json");
    CHECK(pairs(chosen) == c.expected);
    CHECK(chosen.files == full.files);
  }
}

TEST_CASE("malformed indexes get the full path's message") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{",
       "not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 2: syntax error while "
       "parsing object key - unexpected end of input; expected string literal"},
      {"[]", "is not a JSON object"},
      {R"({"metadata":{}})", "has no weight_map"},
      {R"({"weight_map":[]})", "weight_map is not an object"},
      {R"({"weight_map":{"a":1}})", "weight_map: tensor 'a' maps to a non-string"},
      {R"({"weight_map":{"a":"../m.safetensors"}})",
       "weight_map: tensor 'a' maps to '../m.safetensors', which is not a file name in the folder"},
      {R"({"weight_map":{"a":".."}})",
       "weight_map: tensor 'a' maps to '..', which is not a file name in the folder"},
      {R"({"weight_map":{"a":""}})",
       "weight_map: tensor 'a' maps to '', which is not a file name in the folder"},
      {R"({"weight_map":{"a":"m.safetensors\u0000"}})", ""},  // the OS would open "m.safetensors"
      {R"({"weight_map":{"a":"m.safetensors","a":"m.safetensors"}})", "weight_map names tensor 'a' twice"},
      {R"({"weight_map":{"b":"m.safetensors","a":"m.safetensors","b":"n.safetensors"}})",
       "weight_map names tensor 'b' twice"},
      {R"({"weight_map":{"a":"m.safetensors"},"weight_map":{"a":"m.safetensors"}})",
       "weight_map names tensor 'a' twice"},
      {R"({"weight_map":{}, "deep":)" + std::string(1'000'000, '['), "JSON nested deeper than 64 levels"},
      {std::string(R"({"weight_map":{"a":"m.safetensors"}})") + '\0' + "ignored?",
       "holds a NUL byte at offset 36"},
      {"{\"weight_map\":{\"a\xFF\":\"m.safetensors\"}}", ""},  // the full path's words, whatever they are
      {R"({"weight_map":{"a":"m.safetensors"}} x)", ""},
      {R"({"weight_map":{"a":"m.safetensors",}})", ""},
      {R"({"weight_map":{"a":"m.safetensors"},"n":01})", ""},
      {R"({"weight_map":{"a":"m.safetensors"},"n":- 1})", ""},
      {R"({"weight_map":{"a":"m.safetensors"},"n":tru})", ""},
  };
  for (const auto& [text, message] : cases) {
    INFO(text.substr(0, 80));
    IndexText copy = index_text(text);
    CHECK_FALSE(parse_index_fast(copy).has_value());
    const std::string full = error_of(parse_index_full, text);
    CHECK(full != "(accepted)");
    if (!message.empty()) CHECK(full == "model.safetensors.index.json: " + message);
    CHECK(error_of(parse_index, text) == full);
  }
}
