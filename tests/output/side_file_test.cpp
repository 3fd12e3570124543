// Side files: copied byte for byte through a temporary name, refused when a manifest records other
// bytes for them (reshard's old folder), and files the plan computed.
#include "output/side_file.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/safetensors/writer.hpp>

#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

struct Folders {
  TempDir dir;
  plan::Plan plan;
  std::string content = std::string(3u << 20, 'x') + "end\n";  // more than one buffer of the copy

  Folders() {
    fs::create_directories(dir / "in");
    fs::create_directories(dir / "out");
    write_file(dir / "in" / "config.json", content);
    plan.input_root = (dir / "in").string();
    plan.side_files = {"config.json"};
  }
};

TEST_CASE("side file: copied byte for byte, its entry holds the checksum of its bytes") {
  Folders f;
  const output::InputWatch inputs(f.plan);
  output::Progress progress(output::ProgressMode::quiet, f.content.size());
  const output::ManifestSideFile entry = output::copy_side_file(
      f.plan.input_root, "config.json", (f.dir / "out").string(), OutsideLinks::refuse, inputs, progress);
  CHECK(read_file(f.dir / "out" / "config.json") == f.content);
  CHECK(entry.file == "config.json");
  CHECK(entry.xxh3 == output::xxh3(f.content));
  // The checksum it must have: the same bytes pass.
  const output::ManifestSideFile again =
      output::copy_side_file(f.plan.input_root, "config.json", (f.dir / "out").string(), OutsideLinks::refuse,
                             inputs, progress, output::xxh3(f.content));
  CHECK(again.xxh3 == entry.xxh3);
}

TEST_CASE("side file: bytes other than the manifest records are refused, nothing left in the folder") {
  Folders f;
  const output::InputWatch inputs(f.plan);
  output::Progress progress(output::ProgressMode::quiet, f.content.size());
  const std::uint64_t recorded = output::xxh3(std::string("what the manifest saw\n"));
  const std::string path = (f.dir / "in" / "config.json").string();
  try {
    output::copy_side_file(f.plan.input_root, "config.json", (f.dir / "out").string(), OutsideLinks::refuse,
                           inputs, progress, recorded);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    CHECK(std::string(e.what()) == path + ": xxh3 " + output::xxh3_hex(output::xxh3(f.content)) +
                                       ", the manifest says " + output::xxh3_hex(recorded));
  }
  CHECK(!fs::exists(f.dir / "out" / "config.json"));
  CHECK(!fs::exists(st::temp_path_for((f.dir / "out" / "config.json").string())));
}

TEST_CASE("side file: a generated file is written as the plan computed it") {
  Folders f;
  const output::InputWatch inputs(f.plan);
  output::Progress progress(output::ProgressMode::quiet, 0);
  plan::GeneratedFile file;
  file.file = "model.safetensors.index.json";
  file.content = "{\"weight_map\": {}}\n";
  const output::ManifestSideFile entry =
      output::write_generated_file(file, (f.dir / "out").string(), inputs, progress);
  CHECK(read_file(f.dir / "out" / "model.safetensors.index.json") == file.content);
  CHECK(entry.file == file.file);
  CHECK(entry.xxh3 == output::xxh3(file.content));
}

}  // namespace
}  // namespace shardwise::test
