// Resharding in-process, through the library's API (reshard/reshard.hpp): the plan of 4 -> 2 read
// against the old rank files' own headers, its execution against a direct conversion at mp 2 (and
// the manifest it writes against verify), the same plan learnt from the rules for a folder without
// a manifest, and old folders that are damaged or cannot be cut as asked refused before a rank
// file lands. The checkpoint and the reference folders are made by the real generator and binary.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/reshard/reshard.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/file.hpp>
#include <shardwise/verify/verifier.hpp>

#include "support/cli.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;
using Kind = plan::Placement::Kind;
using reshard::CopyCheck;

const std::string kManifest = "shardwise-manifest.json";

// A checkpoint of one layer of 8 experts, converted at mp 4 (the folder resharded) and at mp 2
// (what resharding it to mp 2 must write).
struct Folders {
  TempDir dir;
  fs::path in = dir / "in";
  fs::path mp4 = dir / "mp4";
  fs::path mp2 = dir / "mp2";
  Folders() {
    generate_checkpoint(in, {"--layers", "1", "--experts", "8"});
    for (const auto& [mp, folder] : {std::pair{"4", mp4}, std::pair{"2", mp2}}) {
      const CommandResult converted = run_command(convert_args(in, folder, {}, mp));
      INFO(converted.err);
      REQUIRE(converted.exit_code == 0);
    }
  }
  // A copy of the mp 4 folder, for a test to damage.
  fs::path copy_of_mp4(const std::string& name) const {
    const fs::path copy = dir / name;
    fs::copy(mp4, copy);
    return copy;
  }
};

reshard::ReshardOptions quiet_into(const fs::path& out) {
  reshard::ReshardOptions options;
  options.run.output_dir = out.string();
  options.run.progress = output::ProgressMode::quiet;
  options.run.threads = 2;
  return options;
}

// Every file of a folder but the manifest and the lock, name -> bytes.
std::map<std::string, std::string> data_files(const fs::path& folder) {
  std::map<std::string, std::string> files = folder_files(folder);
  files.erase(kManifest);
  files.erase(".shardwise.lock");
  return files;
}

void flip_byte(const fs::path& file, std::uint64_t at) {
  std::string bytes = read_file(file);
  REQUIRE(at < bytes.size());
  bytes[at] ^= 0x10;
  write_file(file, bytes);
}

TEST_CASE("reshard in-process: the plan takes every new tensor from the old pieces that hold it") {
  Folders f;
  const reshard::ReshardPlan plan = reshard::plan_reshard(f.mp4.string(), 2);
  CHECK(plan.from_model_parallel == 4);
  CHECK(plan.model_parallel == 2);

  // The old files in rank order, each read here by its own header.
  REQUIRE(plan.old_files.size() == 4);
  std::vector<st::File> old;
  for (std::size_t r = 0; r < 4; ++r) {
    CHECK(plan.old_files[r].rank == r);
    CHECK(plan.old_files[r].file == "model" + std::to_string(r) + "-mp4.safetensors");
    old.push_back(st::File::open((f.mp4 / plan.old_files[r].file).string()));
  }

  // Each piece is where the old file's header puts that tensor; split pieces are the old ranks'
  // ranges in order, an owned tensor's piece is in the one old file that holds it.
  std::map<Kind, std::size_t> kinds;
  for (const reshard::LogicalTensor& t : plan.logical) {
    INFO(t.name);
    ++kinds[t.placement.kind];
    std::vector<std::size_t> holders;
    for (std::size_t r = 0; r < old.size(); ++r) {
      if (old[r].header().find(t.name) != nullptr) holders.push_back(r);
    }
    REQUIRE(!t.pieces.empty());
    for (const reshard::Piece& piece : t.pieces) {
      const st::TensorInfo* info = old[piece.file].header().find(t.name);
      REQUIRE(info != nullptr);
      CHECK(piece.offset == old[piece.file].absolute_offset(*info));
      CHECK(piece.bytes == info->bytes());
      // Split and owned pieces carry the checksum the manifest records; replicated copies are
      // compared as CopyCheck says.
      CHECK(piece.xxh3.has_value() == (t.placement.kind != Kind::replicated));
    }
    if (t.placement.kind == Kind::split) {
      REQUIRE(t.pieces.size() == 4);
      const std::uint64_t extent = t.shape[static_cast<std::size_t>(t.placement.dim)];
      for (std::size_t r = 0; r < 4; ++r) {
        CHECK(t.pieces[r].file == r);
        CHECK(t.pieces[r].begin == r * extent / 4);
        CHECK(t.pieces[r].end == (r + 1) * extent / 4);
      }
    } else if (t.placement.kind == Kind::owned) {
      REQUIRE(holders.size() == 1);
      REQUIRE(t.pieces.size() == 1);
      CHECK(t.pieces[0].file == holders[0]);
    } else {
      CHECK(holders.size() == 4);
      CHECK(t.pieces.size() == 1);
    }
  }
  CHECK(kinds[Kind::split] > 0);
  CHECK(kinds[Kind::owned] > 0);
  CHECK(kinds[Kind::replicated] > 0);

  // The new files hold, in name order, the tensors and shapes of the direct conversion's files.
  REQUIRE(plan.outputs.size() == 2);
  std::uint64_t total = 0;
  for (std::size_t r = 0; r < 2; ++r) {
    const reshard::NewFile& out = plan.outputs[r];
    CHECK(out.rank == r);
    REQUIRE(out.file == "model" + std::to_string(r) + "-mp2.safetensors");
    const st::File direct = st::File::open((f.mp2 / out.file).string());
    REQUIRE(out.tensors.size() == direct.header().tensors.size());
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < out.tensors.size(); ++i) {
      const st::TensorInfo& expected = direct.header().tensors[i];
      CHECK(plan.logical[out.tensors[i].logical].name == expected.name);
      CHECK(reshard::shape_of(plan, out.tensors[i]) == expected.shape);
      CHECK(out.tensors[i].bytes == expected.bytes());
      bytes += expected.bytes();
    }
    CHECK(out.bytes == bytes);
    total += bytes;
  }
  CHECK(plan.output_bytes == total);

  // Side files: every other file of the old folder, the manifest and the rank files aside.
  std::set<std::string> side;
  for (const auto& [name, bytes] : data_files(f.mp4)) {
    if (fs::path(name).extension() != ".safetensors") side.insert(name);
  }
  CHECK(!side.empty());
  CHECK(std::set<std::string>(plan.side_files.begin(), plan.side_files.end()) == side);
}

TEST_CASE(
    "reshard in-process: the JSON dry run, written a tensor at a time, is one document as dump(1) writes "
    "it") {
  Folders f;
  const reshard::ReshardPlan plan = reshard::plan_reshard(f.mp4.string(), 2);
  struct Case {
    const char* what;
    plan::PlanFilter filter;
  };
  const Case cases[] = {
      {"whole", {}},
      {"one rank", {std::nullopt, 1, std::nullopt}},
      {"no tensor shown (empty lists)", {"no-such-tensor", std::nullopt, std::nullopt}},
      {"one rank, owned", {std::nullopt, 0, "owned"}},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    std::string text;
    std::size_t parts = 0;
    reshard::format_reshard_json(plan, c.filter, [&](std::string_view part) {
      text += part;
      ++parts;
    });
    CHECK(parts >= 1);
    const nlohmann::ordered_json doc = nlohmann::ordered_json::parse(text);
    CHECK(doc.dump(1) + "\n" == text);
    CHECK(reshard::format_reshard_json(plan, c.filter) == text);
  }
}

TEST_CASE("reshard in-process: 4 -> 2 writes a direct conversion's files, and a manifest that verifies") {
  Folders f;
  const std::map<std::string, std::string> expected = data_files(f.mp2);
  REQUIRE(expected.size() > 2);  // the rank files and the side files

  SECTION("in one run") {
    const fs::path out = f.dir / "out";
    const reshard::ReshardSummary summary =
        reshard::execute_reshard(reshard::plan_reshard(f.mp4.string(), 2), quiet_into(out));
    CHECK(summary.files == 2);
    CHECK(data_files(out) == expected);
    verify::VerifyOptions options;
    options.output_dir = out.string();
    options.progress = output::ProgressMode::quiet;
    const verify::VerifyReport report = verify::verify_manifest(options);
    CHECK(report.ok());
    CHECK(report.files == 2);
  }
  SECTION("one rank per run, in either order, into the same folder") {
    const fs::path out = f.dir / "by-rank";
    for (const std::uint64_t rank : {std::uint64_t{1}, std::uint64_t{0}}) {
      reshard::ReshardOptions options = quiet_into(out);
      options.run.ranks = std::vector<std::uint64_t>{rank};
      CHECK(reshard::execute_reshard(reshard::plan_reshard(f.mp4.string(), 2), options).files == 1);
    }
    CHECK(data_files(out) == expected);
    CHECK(fs::exists(out / kManifest));
  }
}

TEST_CASE("reshard in-process: a folder without a manifest is planned from the rules as from its manifest") {
  Folders f;
  const fs::path bare = f.copy_of_mp4("bare");
  fs::remove(bare / kManifest);
  const reshard::ReshardPlan recorded = reshard::plan_reshard(f.mp4.string(), 2);
  const reshard::ReshardPlan derived =
      reshard::plan_reshard(bare.string(), 2, rules::Rules::bundled(), rules::Params{{"n_experts", 8}});
  REQUIRE(derived.logical.size() == recorded.logical.size());
  for (std::size_t i = 0; i < recorded.logical.size(); ++i) {
    const reshard::LogicalTensor& a = recorded.logical[i];
    const reshard::LogicalTensor& b = derived.logical[i];
    INFO(a.name);
    CHECK(b.name == a.name);
    CHECK(b.shape == a.shape);
    CHECK(b.placement.kind == a.placement.kind);
    CHECK(b.placement.dim == a.placement.dim);
    REQUIRE(b.pieces.size() == a.pieces.size());
    for (std::size_t p = 0; p < a.pieces.size(); ++p) {
      CHECK(b.pieces[p].file == a.pieces[p].file);
      CHECK(b.pieces[p].offset == a.pieces[p].offset);
      CHECK(b.pieces[p].begin == a.pieces[p].begin);
      CHECK(b.pieces[p].end == a.pieces[p].end);
    }
  }
  const fs::path out = f.dir / "out";
  reshard::execute_reshard(derived, quiet_into(out));
  CHECK(data_files(out) == data_files(f.mp2));
}

TEST_CASE("reshard in-process: damaged old folders and impossible cuts are refused, no rank file written") {
  Folders f;
  const fs::path out = f.dir / "out";
  const reshard::ReshardPlan sound = reshard::plan_reshard(f.mp4.string(), 2);
  const reshard::LogicalTensor* replicated = nullptr;
  for (const reshard::LogicalTensor& t : sound.logical) {
    if (t.placement.kind != Kind::replicated) continue;
    if (replicated == nullptr || t.pieces[0].bytes > replicated->pieces[0].bytes) replicated = &t;
  }
  REQUIRE(replicated != nullptr);

  SECTION("a rank file shorter than its manifest says") {
    const fs::path from = f.copy_of_mp4("short");
    const fs::path file = from / "model1-mp4.safetensors";
    fs::resize_file(file, fs::file_size(file) - 1);
    try {
      reshard::plan_reshard(from.string(), 2);
      FAIL("planned a truncated rank file");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK_THAT(e.what(), Catch::Contains("model1-mp4.safetensors"));
    }
  }
  SECTION("a replicated copy that differs from its checksum: when planned, or before any file is committed") {
    const fs::path from = f.copy_of_mp4("flipped");
    // Rank 3's copy: not the one gathered (rank 0's), so only the checksum of the copies finds it.
    std::uint64_t middle = 0;
    {
      const st::File old = st::File::open((from / "model3-mp4.safetensors").string());
      const st::TensorInfo* info = old.header().find(replicated->name);
      REQUIRE(info != nullptr);
      middle = old.absolute_offset(*info) + info->bytes() / 2;
    }
    flip_byte(from / "model3-mp4.safetensors", middle);
    const std::string expected = "model3-mp4.safetensors: " + replicated->name + " (replicated) has xxh3";
    CHECK_THROWS_WITH(reshard::plan_reshard(from.string(), 2, CopyCheck::when_planned),
                      Catch::Contains(expected));
    const reshard::ReshardPlan plan = reshard::plan_reshard(from.string(), 2, CopyCheck::when_written);
    CHECK_THROWS_WITH(reshard::execute_reshard(plan, quiet_into(out)), Catch::Contains(expected));
    CHECK(!holds_rank_file(out));
  }
  SECTION("a new mp out of range, or one the tensors cannot be cut for") {
    try {
      reshard::plan_reshard(f.mp4.string(), 0);
      FAIL("planned mp 0");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
    }
    try {
      reshard::plan_reshard(f.mp4.string(), 3);
      FAIL("planned mp 3 for 8 experts");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK_THAT(e.what(), Catch::Contains("mp=3"));
    }
  }
}

}  // namespace
}  // namespace shardwise::test
