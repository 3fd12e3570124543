// `shardwise inspect` through the real binary: its outputs, and malformed inputs refused with a
// non-zero exit (never a signal) naming the file.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "safetensors/st_bytes.hpp"
#include "support/support.hpp"

using namespace shardwise::test;

namespace {

CommandResult inspect(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {shardwise_binary(), "inspect"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

// Two files: a.safetensors {w: F32 [2, 3], s: BF16 []}, b.safetensors {layers.10.x: U8 [0]}.
void write_checkpoint(const TempDir& dir) {
  write_file(
      dir / "a.safetensors",
      st_file("{" + entry("w", "F32", "[2,3]", 0, 24) + "," + entry("s", "BF16", "[]", 24, 26) + "}", 26));
  write_file(dir / "b.safetensors", st_file("{" + entry("layers.10.x", "U8", "[0]", 0, 0) + "}  ", 0));
}

}  // namespace

TEST_CASE("inspect prints a table, then totals") {
  TempDir dir;
  write_checkpoint(dir);
  const auto r = inspect({dir.str()});
  CHECK(r.err == "");
  REQUIRE(r.exit_code == 0);
  CHECK(r.out ==
        "TENSOR       DTYPE  SHAPE   BYTES  FILE\n"
        "s            BF16   []          2  a.safetensors\n"
        "w            F32    [2, 3]     24  a.safetensors\n"
        "layers.10.x  U8     [0]         0  b.safetensors\n"
        "total: 2 files, 3 tensors, 26 bytes (26 B)\n");
}

TEST_CASE("inspect --format json prints one object with a tensors list") {
  TempDir dir;
  write_checkpoint(dir);
  const auto r = inspect({dir.str(), "--format", "json"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out ==
        "{\"tensors\": [\n"
        "  {\"name\":\"s\",\"dtype\":\"BF16\",\"shape\":[],\"file\":\"a.safetensors\",\"bytes\":2},\n"
        "  {\"name\":\"w\",\"dtype\":\"F32\",\"shape\":[2,3],\"file\":\"a.safetensors\",\"bytes\":24},\n"
        "  {\"name\":\"layers.10.x\",\"dtype\":\"U8\",\"shape\":[0],\"file\":\"b.safetensors\",\"bytes\":0}\n"
        "],\n"
        "\"totals\": {\"files\":2,\"tensors\":3,\"bytes\":26}}\n");
}

TEST_CASE("inspect escapes control bytes of names in the table, not in JSON") {
  TempDir dir;
  const auto path = dir / "x.safetensors";
  write_file(path, st_file(R"({"a\u001b[2J":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1));
  const auto text = inspect({path.string()});
  REQUIRE(text.exit_code == 0);
  CHECK(text.out.find("a\\x1b[2J  U8") != std::string::npos);
  const auto json = inspect({path.string(), "--format", "json"});
  REQUIRE(json.exit_code == 0);
  CHECK(json.out.find(R"({"name":"a\u001b[2J","dtype":"U8")") != std::string::npos);
}

TEST_CASE("inspect of a single file") {
  TempDir dir;
  write_checkpoint(dir);
  const auto r = inspect({(dir / "b.safetensors").string(), "--format=json"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("\"totals\": {\"files\":1,\"tensors\":1,\"bytes\":0}}") != std::string::npos);
}

TEST_CASE("inspect refuses malformed files with exit 4 and a message naming the file") {
  TempDir dir;
  const std::vector<std::pair<const char*, std::string>> files = {
      {"empty", ""},
      {"short", "abc"},
      {"huge length", le64(~0ull) + "{}"},
      {"length past the end", le64(1000) + "{}"},
      {"not json", st_file("{{{{", 0)},
      {"deeply nested", st_file("{\"a\":" + std::string(1'000'000, '{'), 0)},
      {"bad offsets", st_file("{" + entry("t", "F32", "[4]", 0, 15) + "}", 15)},
      {"trailing bytes", st_file("{}", 100)},
      {"unknown dtype", st_file("{" + entry("t", "F128", "[1]", 0, 16) + "}", 16)},
      {"invalid utf-8", st_file("{\"\xff\":{}}", 0)},
  };
  for (const auto& [defect, bytes] : files) {
    INFO(defect);
    const auto path = dir / (std::string(defect) + ".safetensors");
    write_file(path, bytes);
    const auto r = inspect({path.string()});
    CHECK(r.signal == 0);
    CHECK(r.exit_code == 4);
    CHECK(r.out == "");
    CHECK(r.err.rfind("shardwise: error: " + path.string() + ": ", 0) == 0);
  }
}

TEST_CASE("inspect reports every index mismatch at once") {
  TempDir dir;
  write_checkpoint(dir);
  write_file(dir / "model.safetensors.index.json",
             R"({"weight_map":{"w":"a.safetensors","s":"b.safetensors","ghost":"c.safetensors"}})");
  const auto r = inspect({dir.str()});
  CHECK(r.exit_code == 4);
  for (const char* expected :
       {"(3 problems)", "file 'c.safetensors' is named by the index",
        "tensor 'layers.10.x' in 'b.safetensors' is not in the index",
        "maps tensor 's' to 'b.safetensors', which does not hold it (it is in 'a.safetensors')"}) {
    INFO(expected);
    CHECK(r.err.find(expected) != std::string::npos);
  }
}

TEST_CASE("inspect: usage and OS errors have their own exit codes") {
  TempDir dir;
  const auto missing = inspect({(dir / "missing").string()});
  CHECK(missing.exit_code == 5);
  CHECK(missing.err.find((dir / "missing").string()) != std::string::npos);
  CHECK(inspect({dir.str(), "--format", "yaml"}).exit_code == 2);
  CHECK(inspect({}).exit_code == 2);
  const auto help = inspect({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("--format") != std::string::npos);
}
