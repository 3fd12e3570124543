// The header parser's fast path against the full path: on every valid header it either gives the
// very same Header or declines, and whatever it declines the full path words unchanged.
#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/header.hpp>

// Internal to the reader.
#include "safetensors/header_fast.hpp"
#include "safetensors/st_bytes.hpp"

using namespace shardwise;
using namespace shardwise::st;
using shardwise::test::entry;

namespace {

constexpr std::uint64_t kMax = UINT64_MAX;

void require_same(const Header& a, const Header& b) {
  CHECK(a.header_bytes == b.header_bytes);
  CHECK(a.data_start == b.data_start);
  CHECK(a.metadata == b.metadata);
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    INFO("tensor " << i);
    CHECK(a.tensors[i].name == b.tensors[i].name);
    CHECK(a.tensors[i].dtype == b.tensors[i].dtype);
    CHECK(a.tensors[i].shape == b.tensors[i].shape);
    CHECK(a.tensors[i].begin == b.tensors[i].begin);
    CHECK(a.tensors[i].end == b.tensors[i].end);
  }
}

enum class Path { fast, full };  // which path a valid header is expected to take

struct ValidHeader {
  const char* what;
  std::string json;
  std::uint64_t data_bytes;
  Path path;
};

std::string obj(const std::string& body) { return "{" + body + "}"; }

std::vector<ValidHeader> valid_headers() {
  const std::string a = entry("a", "F32", "[3]", 0, 12), b = entry("b", "U8", "[4]", 12, 16);
  // A U8 tensor holding all the data a file can have after a header of this length (its offsets
  // and shape are then near 2^64); the JSON's length depends on the number, so settle it first.
  std::string huge;
  for (std::uint64_t bytes = kMax - 8;;) {
    huge = obj(entry("big", "U8", "[" + std::to_string(bytes) + "]", 0, bytes));
    const std::uint64_t fits = kMax - 8 - huge.size();
    if (fits == bytes) break;
    bytes = fits;
  }
  return {
      {"empty", "{}", 0, Path::fast},
      {"empty with padding", " \t{ \r\n}        ", 0, Path::fast},
      {"empty metadata", R"({"__metadata__":{}})", 0, Path::fast},
      {"metadata and tensors",
       R"({"__metadata__":{"format":"pt","note":"caf)"
       "\xC3\xA9"
       R"("},)" +
           a + "," + b + "}",
       16, Path::fast},
      {"metadata last", obj(a + "," + b + R"(,"__metadata__":{"x":"","":"y"})"), 16, Path::fast},
      {"whitespace everywhere",
       " {\n \"b\" :\t{ \"dtype\" : \"U8\" ,\r\n \"shape\" : [ 4 ] , \"data_offsets\" : [ 12 , 16 ] } ,\n"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}\n}\n   ",
       16, Path::fast},
      {"fields in every order",
       obj(R"("f1":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
           R"("f2":{"dtype":"U8","data_offsets":[1,2],"shape":[1]},)"
           R"("f3":{"shape":[1],"dtype":"U8","data_offsets":[2,3]},)"
           R"("f4":{"shape":[1],"data_offsets":[3,4],"dtype":"U8"},)"
           R"("f5":{"data_offsets":[4,5],"dtype":"U8","shape":[1]},)"
           R"("f6":{"data_offsets":[5,6],"shape":[1],"dtype":"U8"})"),
       6, Path::fast},
      {"not in data order, not in name order",
       obj(entry("d", "BF16", "[2,2]", 8, 16) + "," + entry("b", "F32", "[0,5]", 8, 8) + "," +
           entry("c", "F64", "[]", 0, 8) + "," + entry("a", "I8", "[0]", 8, 8)),
       16, Path::fast},
      {"data order is name order per dtype",
       obj(entry("x.1", "F32", "[1]", 0, 4) + "," + entry("x.2", "F32", "[1]", 4, 8) + "," +
           entry("a.1", "U8", "[1]", 8, 9) + "," + entry("a.2", "U8", "[1]", 9, 10) + "," +
           entry("m", "F4", "[2]", 10, 11)),
       11, Path::fast},
      {"names as bytes, UTF-8",
       obj(entry("layers.2.w", "U8", "[1]", 0, 1) + "," + entry("layers.10.w", "U8", "[1]", 1, 2) + "," +
           entry("\xC3\xA9t\xC3\xA9", "U8", "[1]", 2, 3) + "," + entry("", "U8", "[1]", 3, 4)),
       4, Path::fast},
      {"a tensor named like a field",
       obj(entry("dtype", "U8", "[1]", 0, 1) + "," + entry("shape", "U8", "[1]", 1, 2)), 2, Path::fast},
      {"numbers near 2^64", huge, kMax - 8 - huge.size(), Path::fast},
      {"a dimension of 2^64 - 1", obj(entry("z", "F64", "[18446744073709551615,0]", 0, 0)), 0, Path::fast},
      {"1024 dimensions",
       [] {
         std::string dims = "[1";
         for (int i = 1; i < 1024; ++i) dims += ",1";
         return obj(entry("r", "U8", dims + "]", 0, 1));
       }(),
       1, Path::fast},
      {"escape in a name",
       obj(entry("caf\\u00e9", "U8", "[1]", 0, 1) + "," + entry("caf\\u00e8", "U8", "[1]", 1, 2)), 2,
       Path::full},
      {"escaped quote in a name", obj(entry("a\\\"b", "U8", "[1]", 0, 1)), 1, Path::full},
      {"escape in metadata", R"({"__metadata__":{"k":"line\nbreak"}})", 0, Path::full},
      {"escape in a field name", R"({"a":{"dtyp\u0065":"U8","shape":[1],"data_offsets":[0,1]}})", 1,
       Path::full},
      {"escape in a dtype", R"({"a":{"dtype":"U\u0038","shape":[1],"data_offsets":[0,1]}})", 1, Path::full},
      {"escaped __metadata__ key", R"({"__metadata\u005f_":{"k":"v"}})", 0, Path::full},
      {"-0 read as 0", R"({"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,-0]}})", 0, Path::full},
  };
}

}  // namespace

TEST_CASE("on valid headers the fast path gives the full path's Header, or declines") {
  for (const auto& c : valid_headers()) {
    INFO(c.what);
    const std::uint64_t file_size = 8 + c.json.size() + c.data_bytes;
    const Header full = detail::parse_header_full(c.json, file_size, "model.safetensors");
    const std::optional<Header> fast = detail::read_header_fast(c.json, c.data_bytes);
    CHECK(fast.has_value() == (c.path == Path::fast));
    const Header chosen = parse_header(c.json, file_size, "model.safetensors");
    require_same(chosen, full);
    if (fast) {
      CHECK(fast->header_bytes == 0);  // left to parse_header
      Header completed = *fast;
      completed.header_bytes = full.header_bytes;
      completed.data_start = full.data_start;
      require_same(completed, full);
    }
  }
}

TEST_CASE("a duplicate is left to the full path, which names it before any later problem") {
  const std::string a = entry("a", "F32", "[3]", 0, 12);
  struct Case {
    std::string json;
    std::uint64_t data_bytes;
    std::string message;
  };
  const std::vector<Case> cases = {
      {obj(a + "," + entry("a", "F32", "[0]", 12, 12)), 12, "tensor 'a' appears twice"},
      {obj(a + "," + entry("b", "U8", "[0]", 12, 12) + "," + a), 12, "tensor 'a' appears twice"},
      {obj(a + "," + entry("a", "F128", "[3]", 0, 12)), 12, "tensor 'a' appears twice"},
      {obj(a + "," + a + "," + entry("b", "F128", "[3]", 0, 12)), 12, "tensor 'a' appears twice"},
      {R"({"__metadata__":{},"__metadata__":{}})", 0, "__metadata__ appears twice"},
      {R"({"__metadata__":{"k":"x","k":"x"}})", 0, "__metadata__ 'k': key appears twice"},
      {R"({"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1,
       "tensor 'a': field 'dtype' appears twice"},
  };
  for (const auto& c : cases) {
    INFO(c.json);
    CHECK_FALSE(detail::read_header_fast(c.json, c.data_bytes).has_value());
    const std::uint64_t file_size = 8 + c.json.size() + c.data_bytes;
    CHECK_THROWS_WITH(parse_header(c.json, file_size, "model.safetensors"),
                      "model.safetensors: " + c.message);
    CHECK_THROWS_WITH(detail::parse_header_full(c.json, file_size, "model.safetensors"),
                      "model.safetensors: " + c.message);
  }
}

TEST_CASE("the fast path declines what the full path refuses") {
  const std::string a = entry("a", "F32", "[3]", 0, 12);
  const std::vector<std::pair<std::string, std::uint64_t>> cases = {
      {"{", 0},
      {"{}x", 0},
      {"{},", 0},
      {obj(a + ","), 12},
      {obj(a), 13},
      {obj(a), 11},
      {obj(entry("a", "F32", "[3]", 0, 16)), 16},
      {obj(entry("a", "F32", "[3]", 12, 0)), 12},
      {obj(entry("a", "F32", "[03]", 0, 12)), 12},
      {obj(entry("a", "F32", "[3.0]", 0, 12)), 12},
      {obj(entry("a", "F32", "[3e0]", 0, 12)), 12},
      {obj(entry("a", "F32", "[18446744073709551616]", 0, 12)), 12},
      {obj(entry("a", "f32", "[3]", 0, 12)), 12},
      {obj(entry("a", "F4", "[3]", 0, 2)), 2},
      {obj(entry("a", "U8", "[4294967296,4294967297]", 0, 0)), 0},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12,12]}})", 12},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[12]}})", 12},
      {R"({"a":{"dtype":"F32","shape":[3]}})", 12},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12],"x":1}})", 12},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12],}})", 12},
      {R"({"a":{"dtype":"F32","shape":[3,],"data_offsets":[0,12]}})", 12},
      {R"({"__metadata__":{"k":1}})", 0},
      {R"({"__metadata__":[]})", 0},
      {"{\"a\x01\":{}}", 0},
      {R"({"a":1})", 0},
  };
  for (const auto& [json, data_bytes] : cases) {
    INFO(json);
    CHECK_FALSE(detail::read_header_fast(json, data_bytes).has_value());
    const std::uint64_t file_size = 8 + json.size() + data_bytes;
    std::string fast_first, full;
    try {
      parse_header(json, file_size, "model.safetensors");
    } catch (const Error& e) {
      fast_first = e.what();
    }
    try {
      detail::parse_header_full(json, file_size, "model.safetensors");
    } catch (const Error& e) {
      full = e.what();
    }
    CHECK(!full.empty());
    CHECK(fast_first == full);
  }
}

namespace {

// The fast path in two parts (from any size on) against one part: the same Header, or both decline.
void require_split_agrees(const std::string& json, std::uint64_t data_bytes) {
  INFO(json);
  const std::optional<Header> whole = detail::read_header_fast(json, data_bytes, SIZE_MAX);
  const std::optional<Header> split = detail::read_header_fast(json, data_bytes, 0);
  REQUIRE(split.has_value() == whole.has_value());
  if (whole) require_same(*split, *whole);
}

// `count` U8 tensors of 1 byte, `extra` inserted as the member before tensor `at`.
std::string members(int count, int at, const std::string& extra, const std::string& separator = ",") {
  std::string body;
  for (int i = 0; i < count; ++i) {
    if (i == at && !extra.empty()) body += extra + separator;
    body += entry("t" + std::to_string(100 + i), "U8", "[1]", i, i + 1);
    if (i + 1 < count) body += separator;
  }
  return obj(body);
}

}  // namespace

TEST_CASE("a header read in two parts gives what it gives in one part") {
  for (const auto& c : valid_headers()) require_split_agrees(c.json, c.data_bytes);
  const std::string metadata = R"("__metadata__":{"format":"pt"})";
  // The second part starts at the first member after the middle: each place of the metadata, in the
  // first part, at the seam or in the second; names that hold `},"` (the seam's mark); whitespace.
  for (int at = 0; at < 12; ++at) {
    require_split_agrees(members(12, at, metadata), 12);
    require_split_agrees(members(12, at, metadata + "," + metadata), 12);  // twice: declined
    require_split_agrees(members(12, at, R"("x},\"y":{"dtype":"U8","shape":[0],"data_offsets":[0,0]})"), 12);
    require_split_agrees(members(12, at, R"("x},\"y")"), 12);  // not an entry: declined
    require_split_agrees(members(12, at, metadata, " ,\n "), 12);
    require_split_agrees(members(12, at, entry("t100", "U8", "[0]", 0, 0)), 12);  // a name twice: declined
  }
  require_split_agrees(members(12, 6, metadata).insert(0, " "), 12);
  std::string trailing_comma = members(12, -1, "");
  trailing_comma.insert(trailing_comma.size() - 1, ",");
  require_split_agrees(trailing_comma, 12);
  CHECK(detail::read_header_fast(members(12, 3, metadata), 12, 0).has_value());
}

TEST_CASE("a header read in two parts is merged in name order, a name twice declined wherever it is") {
  // Names in text order low, high, low, high...: the first part holds the lowest and the highest,
  // the second those between, so that the merge takes from both parts in turn.
  for (int count = 1; count <= 24; ++count) {
    std::vector<std::string> names;
    for (int i = 0; i < count; ++i)
      names.push_back("w." + std::to_string((i % 2 == 0 ? i / 2 : count - 1 - i / 2) + 10) + ".x");
    for (int twice = -1; twice < count; ++twice) {
      std::string body;
      for (int i = 0; i < count; ++i) {
        const std::string name = twice >= 0 && i == (twice + 1) % count && count > 1
                                     ? names[static_cast<std::size_t>(twice)]
                                     : names[static_cast<std::size_t>(i)];
        body += (i > 0 ? "," : "") +
                entry(name, "U8", "[1]", static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(i + 1));
      }
      const std::string json = "{" + body + "}";
      const auto data_bytes = static_cast<std::uint64_t>(count);
      require_split_agrees(json, data_bytes);
      const std::optional<Header> split = detail::read_header_fast(json, data_bytes, 0);
      CHECK(split.has_value() == (twice < 0 || count == 1));
      if (split) {
        const Header full =
            detail::parse_header_full(json, 8 + json.size() + data_bytes, "model.safetensors");
        Header completed = *split;
        completed.header_bytes = full.header_bytes;
        completed.data_start = full.data_start;
        require_same(completed, full);
      }
    }
  }
}

TEST_CASE("strings are read eight bytes at a time, whatever byte ends or refuses them where") {
  // A name of every length up to 24 with, at every place, a byte the fast path takes (UTF-8, DEL)
  // or refuses (an escape, control bytes, which the full path reads or refuses itself).
  for (std::size_t length = 1; length <= 24; ++length) {
    for (std::size_t at = 0; at < length; ++at) {
      for (const std::string special : {"\xC3\xA9", "\x7F", "~", "\\u0041", "\\\"", "\x01", "\x1F", "\t"}) {
        const std::string name = std::string(at, 'a') + special + std::string(length - at - 1, 'b');
        const std::string json =
            "{" + entry(name, "U8", "[1]", 0, 1) + "," + entry("z", "U8", "[1]", 1, 2) + "}";
        INFO(json);
        const bool plain = static_cast<unsigned char>(special[0]) >= 0x20 && special[0] != '\\';
        CHECK(detail::read_header_fast(json, 2).has_value() == plain);
        std::string fast_first, full;
        try {
          fast_first = std::string(parse_header(json, 8 + json.size() + 2, "m").tensors[0].name);
        } catch (const Error& e) {
          fast_first = e.what();
        }
        try {
          full = std::string(detail::parse_header_full(json, 8 + json.size() + 2, "m").tensors[0].name);
        } catch (const Error& e) {
          full = e.what();
        }
        CHECK(fast_first == full);
      }
    }
  }
}
