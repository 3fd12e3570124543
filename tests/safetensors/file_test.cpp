// File::open on real files: the length prefix, what is not a file, and mapped data.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/file.hpp>

// Internal to the reader: the full path, the reference.
#include "safetensors/header_fast.hpp"
#include "safetensors/st_bytes.hpp"
#include "support/support.hpp"

using namespace shardwise;
using namespace shardwise::st;
using namespace shardwise::test;

TEST_CASE("File::open refuses bad length prefixes and non-files, naming the path") {
  TempDir dir;
  const std::string path = (dir / "model.safetensors").string();
  struct Case {
    const char* defect;
    std::string bytes;
    std::string message;  // after "<path>: "
  };
  const std::vector<Case> cases = {
      {"empty file", "", "file is 0 bytes, too short for the 8-byte header length"},
      {"shorter than the prefix", std::string("\x02\0\0\0{}", 6),
       "file is 6 bytes, too short for the 8-byte header length"},
      {"length over the limit", le64(100'000'001) + "{}",
       "header length 100000001 exceeds the limit of 100000000 bytes"},
      {"length 2^64 - 1", le64(~0ull) + "{}",
       "header length 18446744073709551615 exceeds the limit of 100000000 bytes"},
      {"length past the end", le64(100) + std::string(12, ' '),
       "header length 100 runs past the end of the file (108 > 20 bytes)"},
      {"length one past the end", le64(3) + "{}",
       "header length 3 runs past the end of the file (11 > 10 bytes)"},
      {"bad header", st_file("{\"a\":{}}", 0), "tensor 'a': missing field 'dtype'"},
      {"trailing bytes", st_file("{}", 1),
       "the tensors' data ends at 0 but the file holds 1 bytes of data (1 trailing bytes)"},
  };
  for (const auto& c : cases) {
    INFO(c.defect);
    write_file(path, c.bytes);
    try {
      File::open(path);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK(std::string(e.what()) == path + ": " + c.message);
    }
  }
}

TEST_CASE("File::open on a folder, a FIFO and a missing path") {
  TempDir dir;
  CHECK_THROWS_WITH(File::open(dir.str()), dir.str() + ": is a folder, not a safetensors file");
  const std::string fifo = (dir / "pipe.safetensors").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(File::open(fifo), fifo + ": is not a regular file, not a safetensors file");
  const std::string missing = (dir / "missing.safetensors").string();
  try {
    File::open(missing);
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::io);
    CHECK(std::string(e.what()) == "cannot open " + missing + ": No such file or directory");
  }
}

TEST_CASE("File::open reads the header and maps the data") {
  TempDir dir;
  const std::string path = (dir / "model.safetensors").string();
  const std::string json = "{" + entry("b", "U8", "[3]", 4, 7) + "," + entry("a", "I32", "[]", 0, 4) + "}  ";
  write_file(path, st_file(json, std::string("\x01\x02\x03\x04xyz", 7)));
  File moved = File::open(path);
  File file(std::move(moved));
  CHECK(file.path() == path);
  CHECK(file.size() == 8 + json.size() + 7);
  CHECK(file.fd() >= 0);
  const Header& h = file.header();
  REQUIRE(h.tensors.size() == 2);
  CHECK(h.data_start == 8 + json.size());
  const TensorInfo& a = h.tensors[0];
  const TensorInfo& b = h.tensors[1];
  CHECK(file.absolute_offset(b) == h.data_start + 4);
  auto bytes = file.data(b);
  REQUIRE(bytes.size() == 3);
  CHECK(std::memcmp(bytes.data(), "xyz", 3) == 0);
  auto scalar = file.data(a);
  REQUIRE(scalar.size() == 4);
  CHECK(std::to_integer<int>(scalar[3]) == 4);
  // Move-assigning releases the old mapping and keeps the new one usable.
  File other = File::open(path);
  other = std::move(file);
  CHECK(std::memcmp(other.data(other.header().tensors[1]).data(), "xyz", 3) == 0);
}

TEST_CASE("File::open reads a large header in two halves, whole") {
  // Of 4 MiB and more (as a header of DeepSeek-V4-Pro's size): read on two threads, then parsed.
  TempDir dir;
  const std::string path = (dir / "model.safetensors").string();
  std::string json = "{";
  std::uint64_t offset = 0;
  for (int i = 0; json.size() < (std::size_t{5} << 20); ++i) {
    json += (i > 0 ? "," : "") + entry("layers." + std::to_string(i) + ".w", "U8", "[2]", offset, offset + 2);
    offset += 2;
  }
  json += "}";
  write_file(path, st_file(json, static_cast<std::size_t>(offset)));
  const File file = File::open(path);
  const Header whole = detail::parse_header_full(json, file.size(), path);
  REQUIRE(file.header().tensors.size() == whole.tensors.size());
  for (std::size_t i = 0; i < whole.tensors.size(); ++i) {
    INFO(i);
    REQUIRE(file.header().tensors[i].name == whole.tensors[i].name);
    REQUIRE(file.header().tensors[i].begin == whole.tensors[i].begin);
  }
}
