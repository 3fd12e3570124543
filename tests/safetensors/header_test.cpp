// parse_header on hand-written headers: every check of the reading rules, with the exact message.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/header.hpp>

#include "safetensors/st_bytes.hpp"

using namespace shardwise;
using namespace shardwise::st;
using shardwise::test::entry;

namespace {

// Parses `json` as the header of a file holding `data_bytes` bytes of data after it.
Header parse(const std::string& json, std::uint64_t data_bytes) {
  return parse_header(json, 8 + json.size() + data_bytes, "model.safetensors");
}

std::string obj(const std::string& body) { return "{" + body + "}"; }
const std::string kA = entry("a", "F32", "[3]", 0, 12);  // a valid 12-byte entry

struct BadHeader {
  const char* defect;
  std::string json;
  std::uint64_t data_bytes;
  std::string message;  // after "model.safetensors: "
};

std::vector<BadHeader> bad_headers() {
  const std::string deep_shape = std::string(R"({"a":{"dtype":"F32","shape":)") + std::string(1'000'000, '[');
  const std::string deep_meta = std::string(R"({"__metadata__":{"k":)") + std::string(1'000'000, '{');
  std::string many_dims = R"({"a":{"dtype":"U8","shape":[1)";
  for (int i = 0; i < 1024; ++i) many_dims += ",1";
  many_dims += R"(],"data_offsets":[0,1]}})";
  return {
      {"empty header", "", 0, "header is empty"},
      {"only padding", "        ", 0, "header is empty"},
      {"array, not object", "[]", 0, "header is not a JSON object (it starts with '[')"},
      {"string, not object", R"("a")", 0, "header is not a JSON object (it starts with '\"')"},
      {"byte-order mark", "\xEF\xBB\xBF{}", 0, "header is not a JSON object (it starts with '\xEF\xBB\xBF')"},
      {"invalid UTF-8 byte", "{\"a\xFF\":1}", 0, "header is not valid UTF-8 (byte 0xff at offset 11)"},
      {"overlong UTF-8", "{\"\xC0\xAF\":1}", 0, "header is not valid UTF-8 (byte 0xc0 at offset 10)"},
      {"UTF-8 surrogate", "{\"\xED\xA0\x80\":1}", 0, "header is not valid UTF-8 (byte 0xed at offset 10)"},
      {"truncated UTF-8", "{\"\xE2\x82", 0, "header is not valid UTF-8 (byte 0xe2 at offset 10)"},
      {"NUL byte hides trailing text", std::string("{}\0xx", 5), 0, "header holds a NUL byte at offset 10"},
      {"syntax error", R"({"a":})", 0,
       "header is not valid JSON: parse error at line 1, column 6: syntax error while parsing value - "
       "unexpected '}'; "
       "expected '[', '{', or a literal"},
      {"text after the object", "{} x", 0,
       "header is not valid JSON: parse error at line 1, column 4: syntax error while parsing value - "
       "invalid "
       "literal; last read: '{} x'; expected end of input"},
      {"unterminated", "{", 0,
       "header is not valid JSON: parse error at line 1, column 2: syntax error while parsing object key - "
       "unexpected "
       "end of input; expected string literal"},
      {"duplicate tensor", obj(kA + "," + entry("a", "F32", "[0]", 12, 12)), 12, "tensor 'a' appears twice"},
      {"duplicate __metadata__", R"({"__metadata__":{},"__metadata__":{}})", 0, "__metadata__ appears twice"},
      {"__metadata__ not an object", R"({"__metadata__":["x"]})", 0,
       "__metadata__ must be an object, not an array"},
      {"__metadata__ null", R"({"__metadata__":null})", 0, "__metadata__ must be an object, not null"},
      {"__metadata__ value a number", R"({"__metadata__":{"k":1}})", 0,
       "__metadata__ 'k': value must be a string, not a number"},
      {"__metadata__ value an object", R"({"__metadata__":{"k":{}}})", 0,
       "__metadata__ 'k': value must be a string, not an object"},
      {"__metadata__ duplicate key", R"({"__metadata__":{"k":"x","k":"y"}})", 0,
       "__metadata__ 'k': key appears twice"},
      {"entry a string", R"({"a":"F32"})", 0, "tensor 'a': entry must be an object, not a string"},
      {"entry an array", R"({"a":[]})", 0, "tensor 'a': entry must be an object, not an array"},
      {"entry a boolean", R"({"a":true})", 0, "tensor 'a': entry must be an object, not a boolean"},
      {"missing dtype", R"({"a":{"shape":[3],"data_offsets":[0,12]}})", 12,
       "tensor 'a': missing field 'dtype'"},
      {"missing shape", R"({"a":{"dtype":"F32","data_offsets":[0,12]}})", 12,
       "tensor 'a': missing field 'shape'"},
      {"missing data_offsets", R"({"a":{"dtype":"F32","shape":[3]}})", 12,
       "tensor 'a': missing field 'data_offsets'"},
      {"unknown field", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12],"offsets":[0,12]}})", 12,
       "tensor 'a': unknown field 'offsets'"},
      {"duplicate field", R"({"a":{"dtype":"F32","dtype":"F32","shape":[3],"data_offsets":[0,12]}})", 12,
       "tensor 'a': field 'dtype' appears twice"},
      {"dtype a number", R"({"a":{"dtype":32,"shape":[3],"data_offsets":[0,12]}})", 12,
       "tensor 'a': dtype must be a string, not a number"},
      {"dtype an array", R"({"a":{"dtype":["F32"],"shape":[3],"data_offsets":[0,12]}})", 12,
       "tensor 'a': dtype must be a string, not an array"},
      {"unknown dtype", obj(entry("a", "F128", "[3]", 0, 12)), 12, "tensor 'a': unknown dtype 'F128'"},
      {"lower-case dtype", obj(entry("a", "f32", "[3]", 0, 12)), 12, "tensor 'a': unknown dtype 'f32'"},
      {"shape a string", obj(entry("a", "F32", "\"3\"", 0, 12)), 12,
       "tensor 'a': shape must be an array of integers, not a string"},
      {"shape an object", obj(entry("a", "F32", "{}", 0, 12)), 12,
       "tensor 'a': shape must be an array of integers, not an object"},
      {"negative dimension", obj(entry("a", "F32", "[-3]", 0, 12)), 12,
       "tensor 'a': shape entry -3 is negative"},
      {"fractional dimension", obj(entry("a", "F32", "[1.5]", 0, 12)), 12,
       "tensor 'a': shape entry 1.5 is not a non-negative 64-bit integer"},
      {"exponent dimension", obj(entry("a", "F32", "[3e0]", 0, 12)), 12,
       "tensor 'a': shape entry 3e0 is not a non-negative 64-bit integer"},
      {"dimension past 2^64", obj(entry("a", "F32", "[18446744073709551616]", 0, 12)), 12,
       "tensor 'a': shape entry 18446744073709551616 is not a non-negative 64-bit integer"},
      {"dimension a string", obj(entry("a", "F32", "[\"3\"]", 0, 12)), 12,
       "tensor 'a': shape entries must be non-negative integers, not a string"},
      {"dimension null", obj(entry("a", "F32", "[null]", 0, 12)), 12,
       "tensor 'a': shape entries must be non-negative integers, not null"},
      {"nested shape", obj(entry("a", "F32", "[[3]]", 0, 12)), 12,
       "tensor 'a': shape entries must be non-negative integers, not an array"},
      {"shape nested a million deep", deep_shape, 0,
       "tensor 'a': shape entries must be non-negative integers, not an array"},
      {"metadata nested a million deep", deep_meta, 0,
       "__metadata__ 'k': value must be a string, not an object"},
      {"more than 1024 dimensions", many_dims, 1, "tensor 'a': shape has more than 1024 dimensions"},
      {"element count overflow", obj(entry("a", "U8", "[4294967296,4294967297]", 0, 0)), 0,
       "tensor 'a': element count of shape [4294967296, 4294967297] overflows 64 bits"},
      {"byte size overflow", obj(entry("a", "F64", "[2305843009213693952]", 0, 0)), 0,
       "tensor 'a': byte size of F64 [2305843009213693952] overflows 64 bits"},
      {"F4 off a byte boundary", obj(entry("a", "F4", "[3]", 0, 2)), 2,
       "tensor 'a': F4 [3] has 3 elements of 4 bits, which do not end on a byte boundary"},
      {"F6 off a byte boundary", obj(entry("a", "F6_E2M3", "[2,3]", 0, 5)), 5,
       "tensor 'a': F6_E2M3 [2, 3] has 6 elements of 6 bits, which do not end on a byte boundary"},
      {"data_offsets a string", obj(R"("a":{"dtype":"F32","shape":[3],"data_offsets":"0-12"})"), 12,
       "tensor 'a': data_offsets must be an array of integers, not a string"},
      {"one data offset", obj(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[12]})"), 12,
       "tensor 'a': data_offsets must hold 2 integers, not 1"},
      {"three data offsets", obj(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,12,12]})"), 12,
       "tensor 'a': data_offsets must hold 2 integers, not more"},
      {"negative offset", obj(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[-4,8]})"), 12,
       "tensor 'a': data_offsets entry -4 is negative"},
      {"offsets reversed", obj(entry("a", "F32", "[3]", 12, 0)), 12,
       "tensor 'a': data_offsets [12, 0] end before they begin"},
      {"size not numel * size", obj(entry("a.b", "F32", "[3]", 0, 10)), 10,
       "tensor 'a.b': data_offsets [0, 10] hold 10 bytes but F32 [3] needs 12"},
      {"offsets near 2^64", obj(entry("a", "U8", "[1]", 18446744073709551614ull, 18446744073709551615ull)), 1,
       "tensor 'a': data begins at 18446744073709551614 but the data starts at 0 (a gap of "
       "18446744073709551614 bytes)"},
      {"first tensor not at 0", obj(entry("a", "F32", "[3]", 4, 16)), 16,
       "tensor 'a': data begins at 4 but the data starts at 0 (a gap of 4 bytes)"},
      {"gap between tensors", obj(kA + "," + entry("b", "U8", "[4]", 16, 20)), 20,
       "tensor 'b': data begins at 16 but the previous tensor 'a' ends at 12 (a gap of 4 bytes)"},
      {"overlapping tensors", obj(kA + "," + entry("b", "U8", "[4]", 8, 12)), 12,
       "tensor 'b': data begins at 8 but the previous tensor 'a' ends at 12 (an overlap of 4 bytes)"},
      {"same range twice", obj(kA + "," + entry("b", "F32", "[3]", 0, 12)), 12,
       "tensor 'b': data begins at 0 but the previous tensor 'a' ends at 12 (an overlap of 12 bytes)"},
      {"trailing bytes", obj(kA), 16,
       "the tensors' data ends at 12 but the file holds 16 bytes of data (4 trailing bytes)"},
      {"data only, no tensors", "{}", 3,
       "the tensors' data ends at 0 but the file holds 3 bytes of data (3 trailing bytes)"},
      {"data truncated", obj(kA), 8,
       "tensor 'a': data ends at 12 but the file holds only 8 bytes of data (truncated?)"},
      {"control bytes in a name are escaped", obj(R"("a\u001b[31m":1)"), 0,
       "tensor 'a\\x1b[31m': entry must be an object, not a number"},
  };
}

}  // namespace

TEST_CASE("malformed headers are refused with the exact message") {
  const auto cases = bad_headers();
  REQUIRE(cases.size() >= 60);
  for (const auto& c : cases) {
    INFO(c.defect);
    try {
      parse(c.json, c.data_bytes);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK(std::string(e.what()) == "model.safetensors: " + c.message);
    }
  }
}

TEST_CASE("parse_header checks the header length against the limit and the file size") {
  CHECK_THROWS_WITH(parse_header("{}", 9, "x.safetensors"),
                    "x.safetensors: header length 2 runs past the end of the file (10 > 9 bytes)");
  const std::string huge(kMaxHeaderBytes + 1, ' ');
  CHECK_THROWS_WITH(parse_header(huge, 1ull << 40, "x.safetensors"),
                    "x.safetensors: header length 100000001 exceeds the limit of 100000000 bytes");
}

TEST_CASE("long tokens are shortened in messages") {
  const std::string digits(100'000, '1');
  CHECK_THROWS_WITH(parse(obj(entry("a", "U8", "[0." + digits + "]", 0, 0)), 0),
                    "model.safetensors: tensor 'a': shape entry 0." + digits.substr(0, 62) +
                        "... is not a non-negative 64-bit integer");
  try {
    parse("{\"a\":\"" + std::string(100'000, 'x') + "\x01\"}", 0);  // the error quotes the whole string
    FAIL("accepted");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.rfind("model.safetensors: header is not valid JSON: parse error at line 1, column 100007: ",
                     0) == 0);
    CHECK(what.size() < 400);
    CHECK(what.substr(what.size() - 3) == "...");
  }
}

TEST_CASE("a very long tensor name is shortened in messages") {
  const std::string name(5000, 'n');
  CHECK_THROWS_WITH(parse(obj("\"" + name + "\":1"), 0),
                    "model.safetensors: tensor '" + std::string(200, 'n') +
                        "...' (5000 bytes): entry must be an object, not a number");
}

TEST_CASE("an empty header, and padding around the object, are accepted") {
  for (const std::string json : {"{}", "{}      ", "   {}", "\n\t{ }\r\n", "{ \"__metadata__\" : { } }  "}) {
    INFO('"' << json << '"');
    const Header h = parse(json, 0);
    CHECK(h.tensors.empty());
    CHECK(h.metadata.empty());
    CHECK(h.header_bytes == json.size());
    CHECK(h.data_start == 8 + json.size());
  }
}

TEST_CASE("metadata is read as strings") {
  const Header h = parse(R"({"__metadata__":{"format":"pt","note":"caf\u00e9"},)" + kA + "}", 12);
  CHECK(h.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"note", "caf\xC3\xA9"}});
  REQUIRE(h.tensors.size() == 1);
}

TEST_CASE("empty tensors and scalars are legal, and tensors come back sorted by name") {
  // Data order c (scalar F64), then a (empty, at 8), b (empty, at 8), d (2x2 BF16).
  const std::string json = obj(entry("d", "BF16", "[2,2]", 8, 16) + "," + entry("b", "F32", "[0,5]", 8, 8) +
                               "," + entry("c", "F64", "[]", 0, 8) + "," + entry("a", "I8", "[0]", 8, 8));
  const Header h = parse(json, 16);
  REQUIRE(h.tensors.size() == 4);
  CHECK(h.tensors[0].name == "a");
  CHECK(h.tensors[1].name == "b");
  CHECK(h.tensors[2].name == "c");
  CHECK(h.tensors[3].name == "d");
  const TensorInfo* c = h.find("c");
  REQUIRE(c != nullptr);
  CHECK(c->dtype == DType::F64);
  CHECK(c->shape.empty());
  CHECK(c->begin == 0);
  CHECK(c->bytes() == 8);
  const TensorInfo* b = h.find("b");
  REQUIRE(b != nullptr);
  CHECK(b->shape == Shape{0, 5});
  CHECK(b->bytes() == 0);
  CHECK(h.find("e") == nullptr);
  CHECK(h.find("") == nullptr);
}

TEST_CASE("every dtype of the spec is accepted, sub-byte ones on byte boundaries") {
  const std::vector<std::pair<std::string, std::uint64_t>> sizes = {
      {"BOOL", 8},        {"U8", 8},   {"I8", 8},      {"I16", 16},    {"U16", 16},    {"I32", 32},
      {"U32", 32},        {"I64", 64}, {"U64", 64},    {"F16", 16},    {"BF16", 16},   {"F32", 32},
      {"F64", 64},        {"C64", 64}, {"F8_E4M3", 8}, {"F8_E5M2", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8},
      {"F8_E5M2FNUZ", 8}, {"F4", 4},   {"F6_E2M3", 6}, {"F6_E3M2", 6}};
  // Eight elements of each: `bits` bytes per tensor, packed one after the other.
  std::string body;
  std::uint64_t offset = 0;
  for (const auto& [dtype, bits] : sizes) {
    if (!body.empty()) body += ",";
    body += entry("t_" + dtype, dtype, "[2,4]", offset, offset + bits);
    offset += bits;
  }
  const Header h = parse(obj(body), offset);
  REQUIRE(h.tensors.size() == sizes.size());
  for (const auto& [dtype, bits] : sizes) {
    const TensorInfo* t = h.find("t_" + dtype);
    REQUIRE(t != nullptr);
    CHECK(dtype_name(t->dtype) == dtype);
    CHECK(t->bytes() == bits);
  }
}

TEST_CASE("names are compared as bytes and may hold any UTF-8") {
  const std::string json =
      obj(entry("layers.2.w", "U8", "[1]", 0, 1) + "," + entry("layers.10.w", "U8", "[1]", 1, 2) + "," +
          entry("\xC3\xA9t\xC3\xA9", "U8", "[1]", 2, 3) + "," + entry("", "U8", "[1]", 3, 4));
  const Header h = parse(json, 4);
  REQUIRE(h.tensors.size() == 4);
  CHECK(h.tensors[0].name.empty());
  CHECK(h.tensors[1].name == "layers.10.w");
  CHECK(h.tensors[2].name == "layers.2.w");
  CHECK(h.tensors[3].name == "\xC3\xA9t\xC3\xA9");
}

TEST_CASE("a shape or offset written -0 is read as the integer 0") {
  const Header h = parse(R"({"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,-0]}})", 0);
  REQUIRE(h.tensors.size() == 1);
  CHECK(h.tensors[0].shape == Shape{0});
}

TEST_CASE("a header's names and shapes outlive the text it was read from, and its copies outlive it") {
  // Entries the fast path reads and one only the full path reads (an escape): both keep their names.
  for (const std::string escape : {"", "\\u0078"}) {
    INFO("escape: " << escape);
    auto text = std::make_unique<std::string>(
        obj(entry("long.tensor.name.beyond.any.small.buffer" + escape, "U8", "[1,1,1,1,2]", 0, 2) + "," +
            entry("b", "F32", "[2,3]", 2, 26)));
    std::optional<Header> original = parse(*text, 26);
    text->assign(text->size(), ' ');  // what a view into the text would now read
    text.reset();
    const Header copy = *original;
    original.reset();
    REQUIRE(copy.tensors.size() == 2);
    const std::string first =
        "long.tensor.name.beyond.any.small.buffer" + std::string(escape.empty() ? "" : "x");
    CHECK(copy.tensors[0].name == "b");
    CHECK(copy.tensors[0].shape == Shape{2, 3});
    CHECK(copy.tensors[1].name == first);
    CHECK(copy.tensors[1].shape == Shape{1, 1, 1, 1, 2});
    for (const TensorInfo& t : copy.tensors) CHECK(t.name.data()[t.name.size()] == '\0');
    CHECK(copy.find(first) == &copy.tensors[1]);
  }
}
