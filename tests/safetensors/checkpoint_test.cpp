// Checkpoint::open on folders: file order, the index agreeing with the files, duplicates.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "safetensors/st_bytes.hpp"
#include "support/support.hpp"

using namespace shardwise;
using namespace shardwise::st;
using namespace shardwise::test;

namespace {

// A file of U8 tensors of 2 bytes each, laid out in the order given.
void write_st(const TempDir& dir, const std::string& file, const std::vector<std::string>& tensors) {
  std::string body;
  std::uint64_t offset = 0;
  for (const auto& name : tensors) {
    body += (body.empty() ? "" : ",") + entry(name, "U8", "[2]", offset, offset + 2);
    offset += 2;
  }
  write_file(dir / file, st_file("{" + body + "}", offset));
}

// weight_map entries "tensor":"file".
void write_index(const TempDir& dir, const std::vector<std::pair<std::string, std::string>>& map) {
  std::string body;
  for (const auto& [tensor, file] : map)
    body += (body.empty() ? "" : ",") + ("\"" + tensor + "\":\"" + file + "\"");
  write_file(dir / "model.safetensors.index.json",
             R"({"metadata":{"total_size":0},"weight_map":{)" + body + "}}");
}

std::vector<std::string> names(const Checkpoint& c) {
  std::vector<std::string> out;
  for (const auto& ref : c.tensors())
    out.push_back(c.file_name(ref.file) + ":" + std::string(ref.info->name));
  return out;
}

std::string error_of(const std::string& path) {
  try {
    Checkpoint::open(path);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("a single file is a checkpoint") {
  TempDir dir;
  write_st(dir, "one.safetensors", {"z", "y"});
  const auto c = Checkpoint::open((dir / "one.safetensors").string());
  CHECK(c.root() == dir.str());
  REQUIRE(c.files().size() == 1);
  CHECK(names(c) == std::vector<std::string>{"one.safetensors:y", "one.safetensors:z"});
  CHECK(c.total_bytes() == 4);
}

TEST_CASE("without an index, every *.safetensors is read, files and tensors in byte order") {
  TempDir dir;
  write_st(dir, "b.safetensors", {"layers.2.w", "layers.10.w"});
  write_st(dir, "a.safetensors", {"z"});
  write_st(dir, "B.safetensors", {"m"});
  write_file(dir / "notes.txt", "not a checkpoint");
  write_file(dir / "x.safetensors.bak", "not a checkpoint");
  write_file(dir / ".hidden.safetensors", "skipped like a shell glob would");
  const auto c = Checkpoint::open(dir.str());
  CHECK(names(c) == std::vector<std::string>{"B.safetensors:m", "a.safetensors:z",
                                             "b.safetensors:layers.10.w", "b.safetensors:layers.2.w"});
  CHECK(c.files().size() == 3);
  CHECK(c.total_bytes() == 8);
}

TEST_CASE("a folder without safetensors files is an error") {
  TempDir dir;
  write_file(dir / "readme.md", "");
  CHECK(error_of(dir.str()) == dir.str() + ": no *.safetensors files in this folder");
}

TEST_CASE("without an index, duplicates and malformed files are all listed") {
  TempDir dir;
  write_st(dir, "a.safetensors", {"x", "y"});
  write_st(dir, "b.safetensors", {"y", "x"});
  write_file(dir / "c.safetensors", "short");
  write_st(dir, "d.safetensors", {"x"});
  const std::string c = (dir / "c.safetensors").string();
  CHECK(error_of(dir.str()) == dir.str() +
                                   ": the checkpoint cannot be read (4 problems):\n"
                                   "  " +
                                   c +
                                   ": file is 5 bytes, too short for the 8-byte header length\n"
                                   "  tensor 'x' is in both 'a.safetensors' and 'b.safetensors'\n"
                                   "  tensor 'y' is in both 'a.safetensors' and 'b.safetensors'\n"
                                   "  tensor 'x' is in both 'a.safetensors' and 'd.safetensors'");
}

TEST_CASE("with an index, the files it names are read") {
  TempDir dir;
  write_st(dir, "model-00002-of-00002.safetensors", {"b", "a"});
  write_st(dir, "model-00001-of-00002.safetensors", {"c"});
  write_index(dir, {{"a", "model-00002-of-00002.safetensors"},
                    {"b", "model-00002-of-00002.safetensors"},
                    {"c", "model-00001-of-00002.safetensors"}});
  const auto c = Checkpoint::open(dir.str());
  CHECK(names(c) == std::vector<std::string>{"model-00001-of-00002.safetensors:c",
                                             "model-00002-of-00002.safetensors:a",
                                             "model-00002-of-00002.safetensors:b"});
}

TEST_CASE("every disagreement between the index and the files is listed in one error") {
  TempDir dir;
  write_st(dir, "m1.safetensors", {"a", "b", "extra1", "moved"});
  write_st(dir, "m2.safetensors", {"c", "extra2"});
  write_st(dir, "stray.safetensors", {"s"});
  write_index(dir, {{"a", "m1.safetensors"},
                    {"b", "m1.safetensors"},
                    {"c", "m2.safetensors"},
                    {"gone", "m2.safetensors"},
                    {"moved", "m2.safetensors"},
                    {"lost1", "m3.safetensors"},
                    {"lost2", "m3.safetensors"}});
  const std::string index = (dir / "model.safetensors.index.json").string();
  CHECK(error_of(dir.str()) ==
        index + " does not agree with the files in " + dir.str() +
            " (6 problems):\n"
            "  file 'm3.safetensors' is named by the index (2 tensors, e.g. 'lost1') but is missing\n"
            "  file 'stray.safetensors' is in the folder but not in the index\n"
            "  tensor 'extra1' in 'm1.safetensors' is not in the index\n"
            "  tensor 'extra2' in 'm2.safetensors' is not in the index\n"
            "  the index maps tensor 'gone' to 'm2.safetensors', which does not hold it\n"
            "  the index maps tensor 'moved' to 'm2.safetensors', which does not hold it (it is in "
            "'m1.safetensors')");
}

TEST_CASE("with an index, a tensor in two files is an error naming both") {
  TempDir dir;
  write_st(dir, "m1.safetensors", {"a"});
  write_st(dir, "m2.safetensors", {"a", "b"});
  write_index(dir, {{"a", "m1.safetensors"}, {"b", "m2.safetensors"}});
  const std::string index = (dir / "model.safetensors.index.json").string();
  CHECK(error_of(dir.str()) == index + " does not agree with the files in " + dir.str() +
                                   " (1 problem):\n"
                                   "  tensor 'a' is in both 'm1.safetensors' and 'm2.safetensors'");
}

TEST_CASE("a malformed index is refused, naming it") {
  TempDir dir;
  write_st(dir, "m.safetensors", {"a"});
  const std::string index = (dir / "model.safetensors.index.json").string();
  struct Case {
    std::string text;
    std::string message;  // after "<index>: "
  };
  const std::vector<Case> cases = {
      {"{",
       "not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 2: syntax error while "
       "parsing object key - unexpected end of input; expected string literal"},
      {"[]", "is not a JSON object"},
      {R"({"metadata":{}})", "has no weight_map"},
      {R"({"weight_map":[]})", "weight_map is not an object"},
      {R"({"weight_map":{"a":1}})", "weight_map: tensor 'a' maps to a non-string"},
      {R"({"weight_map":{"a":"../m.safetensors"}})",
       "weight_map: tensor 'a' maps to '../m.safetensors', which is not a file name in the folder"},
      {R"({"weight_map":{"a":""}})",
       "weight_map: tensor 'a' maps to '', which is not a file name in the folder"},
      {R"({"weight_map":{"a":"m.safetensors","a":"m.safetensors"}})", "weight_map names tensor 'a' twice"},
      {R"({"weight_map":{}, "deep":)" + std::string(1'000'000, '['), "JSON nested deeper than 64 levels"},
  };
  for (const auto& c : cases) {
    INFO(c.text.substr(0, 60));
    write_file(index, c.text);
    CHECK(error_of(dir.str()) == index + ": " + c.message);
  }
}

TEST_CASE("an index that names no files, in a folder without any, is an error") {
  TempDir dir;
  const std::string index = (dir / "model.safetensors.index.json").string();
  write_file(index, R"({"weight_map":{}})");
  CHECK(error_of(dir.str()) == index + ": the index names no files");
}
