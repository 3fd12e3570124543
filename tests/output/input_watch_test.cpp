// The inputs of a run must not change under it: InputWatch against real files changed the ways a
// download or a sync changes them, and the manifest's record of the inputs (version 2; version 1
// manifests still read).
#include <shardwise/output/input_watch.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/output/manifest.hpp>

#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

// A plan over one tensor file and one side file, with identities taken as the planner takes them,
// both back-dated so that a change within the filesystem's timestamp granularity still shows.
struct Inputs {
  TempDir dir;
  plan::Plan plan;

  Inputs() {
    fs::create_directories(dir / "in");
    write_file(dir / "in" / "a.safetensors", std::string(64, 'a'));
    write_file(dir / "in" / "extra.txt", "side\n");
    for (const char* name : {"a.safetensors", "extra.txt"}) {
      const struct timespec times[2] = {{1'600'000'000, 0}, {1'600'000'000, 0}};
      REQUIRE(::utimensat(AT_FDCWD, (dir / "in" / name).c_str(), times, 0) == 0);
    }
    plan.input_root = (dir / "in").string();
    plan.input_files = {(dir / "in" / "a.safetensors").string()};
    plan.input_identities = {*identity_of_path(plan.input_files[0])};
    plan.side_files = {"extra.txt"};
    plan.side_file_identities = {*identity_of_path((dir / "in" / "extra.txt").string())};
  }
};

std::string check_error(const output::InputWatch& watch) {
  try {
    watch.check();
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    return e.what();
  }
  return "";
}

TEST_CASE("input watch: every way an input file changes fails the check, naming the file and the change") {
  struct Case {
    const char* what;
    std::function<void(const fs::path&)> change;
    const char* file;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"rewritten in place",
       [](const fs::path& in) { write_file(in / "a.safetensors", std::string(64, 'b')); }, "a.safetensors",
       ": modified (mtime 2020-09-13 12:26:40.000000000 UTC -> "},
      {"grown", [](const fs::path& in) { write_file(in / "a.safetensors", std::string(65, 'a')); },
       "a.safetensors", ": size 64 -> 65 bytes"},
      {"replaced",
       [](const fs::path& in) {
         write_file(in / "new", std::string(64, 'a'));
         fs::rename(in / "new", in / "a.safetensors");
       },
       "a.safetensors", ": replaced by another file (inode "},
      {"removed", [](const fs::path& in) { fs::remove(in / "a.safetensors"); }, "a.safetensors", ": removed"},
      {"side file rewritten", [](const fs::path& in) { write_file(in / "extra.txt", "edit\n"); }, "extra.txt",
       ": modified (mtime "},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    Inputs inputs;
    const output::InputWatch watch(inputs.plan);
    CHECK(check_error(watch).empty());
    c.change(inputs.dir / "in");
    const std::string message = check_error(watch);
    CHECK_THAT(message, Catch::StartsWith("input files changed while the conversion read them"));
    CHECK_THAT(message, Catch::Contains((inputs.dir / "in" / c.file).string() + c.expected));
  }
}

TEST_CASE("input watch: the manifest records each input relative to the input folder, as planned") {
  Inputs inputs;
  const output::InputWatch watch(inputs.plan);
  const std::vector<output::ManifestInput> record = watch.record();
  REQUIRE(record.size() == 2);
  CHECK(record[0].file == "a.safetensors");
  CHECK(record[0].identity == inputs.plan.input_identities[0]);
  CHECK(record[1].file == "extra.txt");
  CHECK(record[1].identity.bytes == 5);

  // A plan made without identities gets them when the run starts.
  plan::Plan bare = inputs.plan;
  bare.input_identities.clear();
  bare.side_file_identities.clear();
  CHECK(output::InputWatch(bare).record()[0].identity == inputs.plan.input_identities[0]);
}

TEST_CASE("manifest: the inputs record round-trips, version 1 manifests are read without it") {
  output::Manifest manifest;
  manifest.complete = true;
  manifest.inputs = {{"a.safetensors", {64, 1'600'000'000'000'000'001, 1'700'000'000'000'000'002, 77}},
                     {"extra.txt", {5, -1, 0, 78}}};
  // As read from a file (integers parse as unsigned).
  const auto json = nlohmann::ordered_json::parse(output::manifest_to_json(manifest).dump());
  CHECK(json["shardwise_manifest"] == output::kManifestVersion);
  CHECK(json["input"]["files"][0] ==
        nlohmann::ordered_json::parse(R"({"file":"a.safetensors","bytes":64,"mtime_ns":1600000000000000001,)"
                                      R"("ctime_ns":1700000000000000002,"inode":77})"));
  const output::Manifest read = output::manifest_from_json(json, "m");
  REQUIRE(read.inputs.size() == 2);
  CHECK(read.inputs[0].file == "a.safetensors");
  CHECK(read.inputs[0].identity == manifest.inputs[0].identity);
  CHECK(read.inputs[1].identity == manifest.inputs[1].identity);
  CHECK(output::manifest_from_json(nlohmann::ordered_json::parse(output::format_manifest(manifest)), "m")
            .inputs.size() == 2);

  auto version1 = json;
  version1["shardwise_manifest"] = 1u;
  version1["input"].erase("files");
  CHECK(output::manifest_from_json(version1, "m").inputs.empty());

  struct Bad {
    std::function<void(nlohmann::ordered_json&)> change;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {[](auto& j) { j["shardwise_manifest"] = static_cast<unsigned>(output::kManifestVersion + 1); },
       "m: not a shardwise manifest: unknown version 7"},
      {[](auto& j) { j["input"].erase("files"); }, "m: not a shardwise manifest: missing \"files\""},
      {[](auto& j) { j["input"]["files"][0]["inode"] = -1; },
       "m: not a shardwise manifest: \"inode\" is not a non-negative integer"},
      {[](auto& j) { j["input"]["files"][0]["mtime_ns"] = "soon"; },
       "m: not a shardwise manifest: \"mtime_ns\" is not an integer"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.message);
    auto broken = json;
    b.change(broken);
    try {
      output::manifest_from_json(broken, "m");
      FAIL("read");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK(std::string(e.what()) == b.message);
    }
  }
}

// read_manifest_file reads each tensor entry as it is parsed (no DOM of 100,000s of entries); it
// must give what manifest_from_json gives for the whole document, errors included.
TEST_CASE("manifest: a file is read as its whole document would be, also when unusual") {
  TempDir dir;
  output::Manifest manifest;
  manifest.complete = true;
  manifest.params = {{"mp", 2}};
  const output::TensorCut split{st::DType::BF16, {4, 8}, {plan::Placement::Kind::split, 0, 1, 0, 0}, 4, 8, 8};
  const output::TensorCut owned{st::DType::F32, {3}, {plan::Placement::Kind::owned, -1, 1, 1, 2}, 0, 0, 0};
  manifest.outputs = {{0, "r0", 10, 0x11, {{"a", 0x1, split}, {"b", 0x2, std::nullopt}}},
                      {1, "r1", 20, 0x22, {{"a", 0x3, owned}}}};
  manifest.side_files = {{"s.txt", 0x33}};
  const auto json = nlohmann::ordered_json::parse(output::format_manifest(manifest));
  const auto read_back = [&](const nlohmann::ordered_json& document) {
    write_file(dir / "m.json", document.dump(1));
    return output::read_manifest_file((dir / "m.json").string());
  };
  const std::string expected = output::format_manifest(manifest);
  CHECK(output::format_manifest(*read_back(json)) == expected);
  // The version after the outputs: the entries are read from the document.
  auto late = json;
  late.erase("shardwise_manifest");
  late["shardwise_manifest"] = output::kManifestVersion;
  CHECK(output::format_manifest(*read_back(late)) == expected);

  const std::string path = (dir / "m.json").string();
  const auto message = [&](const nlohmann::ordered_json& document) {
    try {
      read_back(document);
      return std::string("read");
    } catch (const Error& e) {
      return std::string(e.what());
    }
  };
  auto bad_tensor = json;
  bad_tensor["outputs"][1]["tensors"][0]["xxh3"] = "x";
  CHECK(message(bad_tensor) == path + ": not a shardwise manifest: \"xxh3\" is not 16 hex digits");
  // A problem in the head is found first, as manifest_from_json finds it, also after a tensor's.
  bad_tensor["params"] = 3;
  CHECK(message(bad_tensor) == path + ": not a shardwise manifest: \"params\" is not an object");
  auto bad_head = json;
  bad_head["outputs"][0]["rank"] = "zero";
  CHECK(message(bad_head) == path + ": not a shardwise manifest: \"rank\" is not a non-negative integer");
}

TEST_CASE(
    "a manifest read a tensor at a time hands every tensor over once, with its entry, also when read whole") {
  TempDir dir;
  output::Manifest manifest;
  manifest.complete = true;
  manifest.params = {{"mp", 2}};
  manifest.outputs = {{0, "r0", 10, 0x11, {{"a", 0x1}, {"b", 0x2}}}, {1, "r1", 20, 0x22, {{"a", 0x3}}}};
  const auto json = nlohmann::ordered_json::parse(output::format_manifest(manifest));
  const auto visit = [&](const nlohmann::ordered_json& document) {
    write_file(dir / "m.json", document.dump(1));
    std::vector<std::string> seen;
    int restarts = 0;
    const auto read = output::read_manifest_file(
        (dir / "m.json").string(), {[&](std::size_t i, const std::string& file, output::ManifestTensor&& t) {
                                      seen.push_back(fmt::format("{} {} {} {:x}", i, file, t.name, t.xxh3));
                                    },
                                    [&] {
                                      seen.clear();
                                      ++restarts;
                                    }});
    REQUIRE(read);
    CHECK(read->outputs.size() == 2);
    for (const output::ManifestOutput& out : read->outputs) CHECK(out.tensors.empty());
    CHECK(seen == std::vector<std::string>{"0 r0 a 1", "0 r0 b 2", "1 r1 a 3"});
    return restarts;
  };
  CHECK(visit(json) == 0);
  // The file name after the tensors: read whole after all, every tensor handed over again.
  auto late = json;
  for (auto& entry : late["outputs"]) {
    const std::string file = entry["file"];
    entry.erase("file");
    entry["file"] = file;
  }
  CHECK(visit(late) == 1);
  // Keys in name order, as a writer that sorts them writes it: the version after the outputs.
  const auto sorted = nlohmann::ordered_json::parse(nlohmann::json::parse(json.dump()).dump());
  REQUIRE(sorted.begin().key() == "complete");
  CHECK(visit(sorted) == 1);
}

}  // namespace
}  // namespace shardwise::test
