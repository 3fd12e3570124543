// The streaming writer. Expected bytes were produced by the reference implementation's save_file
// on the same tensors and pasted as literals (for names outside plain ASCII: serde_json's output,
// as the case says).

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/file.hpp>
#include <shardwise/safetensors/writer.hpp>

#include <algorithm>
#include <filesystem>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "support/support.hpp"

using namespace shardwise;
using namespace shardwise::st;
namespace fs = std::filesystem;

namespace {

struct TensorWithData {
  OutputTensor tensor;
  std::string data;
};

// The reference's example: two dtypes of F32 (numeric names in byte order), a scalar, an empty
// tensor, BOOL last, metadata first.
std::vector<TensorWithData> small_file_tensors() {
  return {
      {{"layers.2.w", DType::F32, {2}}, std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8)},  // 1, -2
      {{"layers.10.w", DType::F32, {1, 1}}, std::string("\x00\x00\x00\x3f", 4)},              // 0.5
      {{"bias", DType::BF16, {3}}, std::string("\x80\x3f\x00\x40\x40\xc0", 6)},               // 1, 2, -3
      {{"mask", DType::BOOL, {2}}, std::string("\x01\x00", 2)},
      {{"step", DType::I64, {}}, std::string("\x07\x00\x00\x00\x00\x00\x00\x00", 8)},
      {{"ids", DType::U8, {0}}, std::string()},
  };
}

const std::map<std::string, std::string> kSmallMetadata = {{"format", "pt"}};

const std::string kSmallHeader =
    R"({"__metadata__":{"format":"pt"},"step":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
    R"("layers.10.w":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]},)"
    R"("layers.2.w":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},)"
    R"("bias":{"dtype":"BF16","shape":[3],"data_offsets":[20,26]},)"
    R"("ids":{"dtype":"U8","shape":[0],"data_offsets":[26,26]},)"
    R"("mask":{"dtype":"BOOL","shape":[2],"data_offsets":[26,28]}} )";  // one space of padding

const std::string kSmallFile = std::string("\x88\x01\x00\x00\x00\x00\x00\x00", 8) + kSmallHeader +  // N = 392
                               std::string(
                                   "\x07\x00\x00\x00\x00\x00\x00\x00"  // step
                                   "\x00\x00\x00\x3f"                  // layers.10.w
                                   "\x00\x00\x80\x3f\x00\x00\x00\xc0"  // layers.2.w
                                   "\x80\x3f\x00\x40\x40\xc0"          // bias
                                   "\x01\x00",                         // mask
                                   28);

std::vector<OutputTensor> tensors_of(const std::vector<TensorWithData>& with_data) {
  std::vector<OutputTensor> out;
  for (const auto& t : with_data) out.push_back(t.tensor);
  return out;
}

std::span<const std::byte> bytes_of(const std::string& s, std::size_t begin = 0,
                                    std::size_t size = std::string::npos) {
  return std::as_bytes(std::span(s.data(), s.size())).subspan(begin, std::min(size, s.size() - begin));
}

// Writes every tensor whole, in input order, and commits.
void write_whole(const std::string& path, const std::vector<TensorWithData>& tensors,
                 const std::map<std::string, std::string>& metadata = {}) {
  const auto list = tensors_of(tensors);
  const FileLayout layout = layout_file(list, metadata);
  OutputFile file = OutputFile::create(path, layout);
  for (std::size_t i = 0; i < tensors.size(); ++i) file.write_at(layout.offset[i], bytes_of(tensors[i].data));
  file.commit();
}

}  // namespace

TEST_CASE("layout_file lays out as the reference implementation") {
  const auto tensors = tensors_of(small_file_tensors());
  const FileLayout layout = layout_file(tensors, kSmallMetadata);
  CHECK(layout.header == kSmallHeader);
  CHECK(layout.header.size() % 8 == 0);
  CHECK(layout.data_start == 400);
  CHECK(layout.file_size == 428);
  CHECK(layout.order == std::vector<std::size_t>{4, 1, 0, 2, 5, 3});
  CHECK(layout.offset == std::vector<std::uint64_t>{412, 408, 420, 426, 400, 426});
  CHECK(layout.bytes == std::vector<std::uint64_t>{8, 4, 6, 2, 8, 0});
}

TEST_CASE("a written file is byte for byte the reference's") {
  test::TempDir dir;
  const std::string path = (dir / "small.safetensors").string();
  write_whole(path, small_file_tensors(), kSmallMetadata);
  CHECK(test::read_file(path) == kSmallFile);
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);  // no temp left
}

TEST_CASE("names are written as safetensors writes them: UTF-8 as is, serde_json's escapes") {
  // safetensors' serialize() writes the header with Rust's serde_json::to_string. The strings below
  // are what serde_json 1.0.87 (Debian's librust-serde-json-dev) printed for each name with
  // serde_json::to_string(name), and for the metadata map {"k\u{e9}\t": "v\u{1F600}\u{2}/"}; the
  // file layout around them is the format's (one U8 each, name order, spaces to a multiple of 8).
  // Names in byte order: a\x01b, b\s, café, del<DEL>, q"q, s/l, the short escapes, x\x1f, 中, 😀.
  const std::vector<OutputTensor> tensors = {
      {"\xf0\x9f\x98\x80", DType::U8, {1}},  // U+1F600: four bytes, no surrogate pair
      {"\xe4\xb8\xad", DType::U8, {1}},      // U+4E2D
      {"caf\xc3\xa9", DType::U8, {1}},       // U+00E9
      {"a\x01"
       "b",
       DType::U8,
       {1}},
      {"q\"q", DType::U8, {1}},
      {"b\\s", DType::U8, {1}},
      {"s/l", DType::U8, {1}},
      {"t\tn\nr\rb\bf\f", DType::U8, {1}},
      {"del\x7f", DType::U8, {1}},
      {"x\x1f", DType::U8, {1}},
  };
  const std::string expected =
      R"({"a\u0001b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
      R"("b\\s":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
      "\"caf\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]},"
      "\"del\x7f\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[3,4]},"
      R"("q\"q":{"dtype":"U8","shape":[1],"data_offsets":[4,5]},)"
      R"("s/l":{"dtype":"U8","shape":[1],"data_offsets":[5,6]},)"
      R"("t\tn\nr\rb\bf\f":{"dtype":"U8","shape":[1],"data_offsets":[6,7]},)"
      R"("x\u001f":{"dtype":"U8","shape":[1],"data_offsets":[7,8]},)"
      "\"\xe4\xb8\xad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,9]},"
      "\"\xf0\x9f\x98\x80\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9,10]}}       ";
  CHECK(layout_file(tensors).header == expected);
  CHECK(layout_file(tensors).header.size() == 576);
  CHECK(layout_file({}).header == "{}      ");
  const std::map<std::string, std::string> metadata = {{"k\xc3\xa9\t", "v\xf0\x9f\x98\x80\x02/"}};
  CHECK(layout_file({}, metadata).header ==  // 41 bytes, 7 of padding
        "{\"__metadata__\":{\"k\xc3\xa9\\t\":\"v\xf0\x9f\x98\x80\\u0002/\"}}       ");
}

TEST_CASE("a file with non-ASCII names reads back with the same names") {
  test::TempDir dir;
  const std::string path = (dir / "utf8.safetensors").string();
  const std::vector<TensorWithData> tensors = {
      {{"caf\xc3\xa9", DType::U8, {1}}, std::string("\x01", 1)},
      {{"\xf0\x9f\x98\x80.w", DType::U8, {2}}, std::string("\x02\x03", 2)},
      {{"q\"\\/\x01", DType::U8, {1}}, std::string("\x04", 1)},
  };
  write_whole(path, tensors);
  const File file = File::open(path);
  CHECK(file.header().tensors.size() == tensors.size());
  for (const auto& t : tensors) {
    const TensorInfo* info = file.header().find(t.tensor.name);
    REQUIRE(info != nullptr);
    const auto data = file.data(*info);
    CHECK(std::string(reinterpret_cast<const char*>(data.data()), data.size()) == t.data);
  }
}

TEST_CASE("tensors are ordered by dtype, larger first, then by name") {
  // One tensor of every dtype, named so that name order alone would reverse the expected order.
  const std::vector<std::pair<DType, std::string>> expected_order = {
      {DType::U64, "u"},         {DType::I64, "t"},     {DType::F64, "s"},     {DType::C64, "r"},
      {DType::F32, "q"},         {DType::U32, "p"},     {DType::I32, "o"},     {DType::BF16, "n"},
      {DType::F16, "m"},         {DType::U16, "l"},     {DType::I16, "k"},     {DType::F8_E5M2FNUZ, "j"},
      {DType::F8_E4M3FNUZ, "i"}, {DType::F8_E8M0, "h"}, {DType::F8_E4M3, "g"}, {DType::F8_E5M2, "f"},
      {DType::I8, "e"},          {DType::U8, "d"},      {DType::F6_E3M2, "c"}, {DType::F6_E2M3, "b"},
      {DType::F4, "a"},          {DType::BOOL, "_"},
  };
  std::vector<OutputTensor> tensors;
  for (const auto& [dtype, name] : expected_order) tensors.push_back({name, dtype, {8}});
  std::reverse(tensors.begin(), tensors.end());
  const FileLayout layout = layout_file(tensors);
  std::vector<std::string> got;
  for (std::size_t index : layout.order) got.push_back(tensors[index].name);
  std::vector<std::string> want;
  for (const auto& entry : expected_order) want.push_back(entry.second);
  CHECK(got == want);
  for (std::size_t k = 1; k < layout.order.size(); ++k) {  // contiguous, in order
    const auto prev = layout.order[k - 1], cur = layout.order[k];
    CHECK(layout.offset[cur] == layout.offset[prev] + layout.bytes[prev]);
  }
}

TEST_CASE("layout_file refuses what it cannot write") {
  struct Bad {
    std::vector<OutputTensor> tensors;
    std::string message;
  };
  const std::vector<Bad> cases = {
      {{{"a", DType::F32, {1}}, {"b", DType::U8, {1}}, {"a", DType::I8, {2}}},
       "tensor a is written twice to the same file"},
      {{{"__metadata__", DType::U8, {1}}}, "a tensor cannot be named __metadata__"},
      {{{"big", DType::F32, {1ull << 32, 1ull << 31}}},
       "tensor big: shape [4294967296,2147483648] of F32 overflows 64 bits or does not end on a byte "
       "boundary"},
      {{{"odd", DType::F4, {3}}},
       "tensor odd: shape [3] of F4 overflows 64 bits or does not end on a byte boundary"},
      {{{"x", DType::U8, {1ull << 63}}, {"y", DType::U8, {1ull << 63}}},
       "tensor y: the file's data passes 2^64 bytes"},
      {{{"bad\xff", DType::U8, {1}}},
       "tensor name is not valid UTF-8: byte 0xff at offset 3 (after \"bad\")"},
      {{{"\xed\xa0\x80", DType::U8, {1}}},  // an encoded surrogate
       "tensor name is not valid UTF-8: byte 0xed at offset 0 (after \"\")"},
  };
  for (const auto& c : cases) {
    INFO(c.message);
    try {
      layout_file(c.tensors);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK(std::string(e.what()) == c.message);
    }
  }
}

TEST_CASE("pieces written in any order and size give the same file") {
  const auto tensors = small_file_tensors();
  const auto list = tensors_of(tensors);
  const FileLayout layout = layout_file(list, kSmallMetadata);
  struct Piece {
    std::uint64_t offset;
    std::span<const std::byte> bytes;
  };
  std::vector<Piece> pieces;
  std::mt19937 rng(42);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    for (std::size_t at = 0; at < tensors[i].data.size();) {
      const std::size_t n = 1 + rng() % 3;
      const auto bytes = bytes_of(tensors[i].data, at, n);
      pieces.push_back({layout.offset[i] + at, bytes});
      at += bytes.size();
    }
  }
  for (int round = 0; round < 5; ++round) {
    std::shuffle(pieces.begin(), pieces.end(), rng);
    test::TempDir dir;
    const std::string path = (dir / "shuffled.safetensors").string();
    OutputFile file = OutputFile::create(path, layout);
    for (const auto& p : pieces) file.write_at(p.offset, p.bytes);
    file.commit();
    CHECK(test::read_file(path) == kSmallFile);
  }
}

// Write-back and dropping from the page cache change no byte: each piece is sent to disk, some
// are dropped (some before written, some twice, zero-length ranges too), and the file is the same.
TEST_CASE("pieces written back and dropped from the cache give the same file") {
  const auto tensors = small_file_tensors();
  const FileLayout layout = layout_file(tensors_of(tensors), kSmallMetadata);
  test::TempDir dir;
  const std::string path = (dir / "dropped.safetensors").string();
  OutputFile file = OutputFile::create(path, layout);
  file.drop_written(0, layout.file_size);  // only the header written so far
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    file.write_at(layout.offset[i], bytes_of(tensors[i].data));
    file.start_writeback(layout.offset[i], tensors[i].data.size());
    file.drop_written(layout.offset[i], tensors[i].data.size());
    file.drop_written(0, layout.offset[i]);
  }
  file.drop_written(0, layout.file_size);
  file.commit();
  CHECK(test::read_file(path) == kSmallFile);
}

TEST_CASE("the temporary lives beside the final file until commit") {
  CHECK(temp_path_for("out/model0-mp2.safetensors") == "out/.model0-mp2.safetensors.partial");
  CHECK(temp_path_for("/a.safetensors") == "/.a.safetensors.partial");
  CHECK(temp_path_for("a.safetensors") == ".a.safetensors.partial");

  test::TempDir dir;
  const std::string path = (dir / "a.safetensors").string();
  const FileLayout layout = layout_file(tensors_of(small_file_tensors()), kSmallMetadata);
  SECTION("destroyed without commit: nothing is left") {
    {
      OutputFile file = OutputFile::create(path, layout);
      CHECK(file.temp_path() == temp_path_for(path));
      CHECK(fs::file_size(file.temp_path()) == 428);  // sized up front
      CHECK_FALSE(fs::exists(path));
      OutputFile moved = std::move(file);  // the moved-from object must not remove it
      CHECK(fs::exists(moved.temp_path()));
    }
    CHECK(fs::is_empty(dir.path()));
  }
  SECTION("commit renames over an existing file, once") {
    test::write_file(path, "old contents");
    OutputFile file = OutputFile::create(path, layout);
    file.commit();
    file.commit();
    CHECK_FALSE(fs::exists(temp_path_for(path)));
    CHECK(fs::file_size(path) == 428);
  }
  SECTION("a stale temporary from a killed run is truncated") {
    test::write_file(temp_path_for(path), std::string(10000, 'x'));
    write_whole(path, small_file_tensors(), kSmallMetadata);
    CHECK(test::read_file(path) == kSmallFile);
    CHECK_FALSE(fs::exists(temp_path_for(path)));
  }
}

TEST_CASE("OS errors name the path and the reason") {
  test::TempDir dir;
  test::write_file(dir / "file", "not a folder");
  const FileLayout layout = layout_file(tensors_of(small_file_tensors()));
  const std::string temp = (dir / "file" / ".x.safetensors.partial").string();
  try {
    OutputFile::create((dir / "file" / "x.safetensors").string(), layout);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::io);
    CHECK(std::string(e.what()) == "cannot create " + temp + ": Not a directory");
  }
  OutputFile file = OutputFile::create((dir / "y.safetensors").string(), layout);
  CHECK_THROWS_WITH(file.write_at(layout.file_size - 1, bytes_of("ab")),
                    "write of 2 bytes at offset " + std::to_string(layout.file_size - 1) +
                        " passes the end of " + file.temp_path() + " (" + std::to_string(layout.file_size) +
                        " bytes)");
}

TEST_CASE("written files read back through the reader") {
  test::TempDir dir;
  const std::string path = (dir / "small.safetensors").string();
  const auto tensors = small_file_tensors();
  write_whole(path, tensors, kSmallMetadata);
  const File file = File::open(path);
  CHECK(file.header().metadata == kSmallMetadata);
  REQUIRE(file.header().tensors.size() == tensors.size());
  for (const auto& t : tensors) {
    INFO(t.tensor.name);
    const TensorInfo* info = file.header().find(t.tensor.name);
    REQUIRE(info != nullptr);
    CHECK(info->dtype == t.tensor.dtype);
    CHECK(info->shape == t.tensor.shape);
    const auto data = file.data(*info);
    CHECK(std::string(reinterpret_cast<const char*>(data.data()), data.size()) == t.data);
  }
}
