// `shardwise reshard` end to end: a folder converted at mp A, resharded to B, must hold exactly the
// files a direct conversion at mp B writes (the manifest aside: each run writes its own); damaged
// or incomplete sets of rank files are refused, naming the file and the numbers, writing nothing.

#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/fixture.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::Args;
using shardwise::test::CommandResult;
using shardwise::test::convert_args;
using shardwise::test::generate_checkpoint;
using shardwise::test::holds_rank_file;
using shardwise::test::joined;
using shardwise::test::read_file;
using shardwise::test::run_command;
using shardwise::test::run_shardwise;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

// The checkpoint every test reshards: 2 layers of 8 experts.
const Args kCheckpoint = {"--layers", "2", "--experts", "8"};

void convert(const fs::path& in, const fs::path& out, int mp) {
  const auto r = run_command(convert_args(in, out, {}, std::to_string(mp)));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

// Every file but the manifest and the lock, by name.
std::set<std::string> files_of(const fs::path& folder) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name != "shardwise-manifest.json" && name != ".shardwise.lock") names.insert(name);
  }
  return names;
}

void require_same_files(const fs::path& expected, const fs::path& actual) {
  const std::set<std::string> names = files_of(expected);
  REQUIRE(names == files_of(actual));
  REQUIRE(!names.empty());
  for (const std::string& name : names) {
    INFO(name);
    CHECK(read_file(expected / name) == read_file(actual / name));
  }
}

std::string fmt_mp(int mp) { return "mp" + std::to_string(mp); }

}  // namespace

TEST_CASE("reshard from mp A to mp B writes the files a direct conversion at mp B writes") {
  TempDir dir;
  generate_checkpoint(dir / "in", kCheckpoint);
  for (const int mp : {1, 2, 4, 8}) convert(dir / "in", dir / fmt_mp(mp), mp);
  const std::vector<std::pair<int, int>> cases = {{1, 2}, {2, 1}, {2, 4}, {4, 2}, {8, 1},
                                                  {1, 8}, {4, 8}, {8, 2}, {4, 4}};
  for (const auto& [a, b] : cases) {
    INFO("mp " << a << " -> " << b);
    const fs::path out = dir / ("reshard-" + std::to_string(a) + "-" + std::to_string(b));
    const auto r = run_shardwise(
        {"reshard", "--from", (dir / fmt_mp(a)).string(), "-o", out.string(), "-m", std::to_string(b), "-q"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    require_same_files(dir / fmt_mp(b), out);
    // The new folder is a conversion's own: verify accepts it against the original checkpoint.
    const auto v = run_shardwise({"verify", "-i", (dir / "in").string(), "-o", out.string(), "--n-experts",
                                  "8", "-m", std::to_string(b)});
    INFO(v.out << v.err);
    CHECK(v.exit_code == 0);
  }
}

namespace {

// A folder converted at mp 4, copied for a test to damage.
struct Damaged {
  TempDir dir;
  fs::path from;
  fs::path out;
  Damaged() : from(dir / "mp4"), out(dir / "out") {
    generate_checkpoint(dir / "in", kCheckpoint);
    convert(dir / "in", from, 4);
  }
  CommandResult reshard(int mp) {
    return run_shardwise(
        {"reshard", "--from", from.string(), "-o", out.string(), "-m", std::to_string(mp), "-q"});
  }
  // Once the damaged files are repaired, --resume to mp 2 completes the folder as a direct
  // conversion (mp2, converted by the test) wrote it.
  void require_resume_completes() {
    const auto resumed =
        run_shardwise({"reshard", "--from", from.string(), "-o", out.string(), "-m", "2", "--resume", "-q"});
    INFO(resumed.err);
    REQUIRE(resumed.exit_code == 0);
    require_same_files(dir / "mp2", out);
  }
};

// Where a tensor's data starts in a safetensors file, read from its header (independently of
// shardwise's reader).
std::uint64_t data_offset(const fs::path& file, const std::string& tensor) {
  const std::string bytes = read_file(file);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  return 8 + n + header.at(tensor).at("data_offsets").at(0).get<std::uint64_t>();
}

// The size of a tensor's data, from the header as data_offset reads it.
std::uint64_t data_size(const fs::path& file, const std::string& tensor) {
  const std::string bytes = read_file(file);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  const auto offsets = nlohmann::json::parse(bytes.substr(8, n)).at(tensor).at("data_offsets");
  return offsets.at(1).get<std::uint64_t>() - offsets.at(0).get<std::uint64_t>();
}

// The first tensor of old rank `rank` (in the manifest of `folder`) whose cut satisfies `matches`:
// its name and recorded checksum.
std::pair<std::string, std::string> find_tensor(const fs::path& folder, int rank,
                                                const std::function<bool(const nlohmann::json&)>& matches) {
  const auto manifest = nlohmann::json::parse(read_file(folder / "shardwise-manifest.json"));
  for (const auto& t : manifest["outputs"][rank]["tensors"]) {
    if (matches(t["cut"])) return {t["name"], t["xxh3"]};
  }
  return {};
}

bool split_on(const nlohmann::json& cut, int dim) {
  return cut.is_object() && cut.contains("split") && cut["split"] == dim;
}
bool owned(const nlohmann::json& cut) { return cut.is_object() && cut.contains("owned"); }

// Flips one bit of byte `at` of `tensor`'s data in `file`.
void flip(const fs::path& file, const std::string& tensor, std::uint64_t at) {
  std::string bytes = read_file(file);
  bytes[data_offset(file, tensor) + at] ^= 0x10;
  write_file(file, bytes);
}

}  // namespace

TEST_CASE("reshard refuses a damaged or incomplete set of rank files and writes nothing") {
  Damaged d;
  SECTION("a missing rank file") {
    fs::remove(d.from / "model1-mp4.safetensors");
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("model1-mp4.safetensors: missing (rank 1 of mp=4)"));
  }
  SECTION("a truncated rank file") {
    const fs::path file = d.from / "model2-mp4.safetensors";
    fs::resize_file(file, fs::file_size(file) - 100);
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("model2-mp4.safetensors: tensor"));
    CHECK_THAT(r.err, Catch::Contains("(truncated?)"));
    CHECK_THAT(r.err, Catch::Contains("(1 problem)"));
  }
  SECTION("an edited replicated copy") {
    const auto manifest = nlohmann::json::parse(read_file(d.from / "shardwise-manifest.json"));
    std::string replicated;
    for (const auto& t : manifest["outputs"][3]["tensors"]) {
      if (t["cut"] == "replicated") {
        replicated = t["name"];
        break;
      }
    }
    REQUIRE(!replicated.empty());
    const fs::path file = d.from / "model3-mp4.safetensors";
    std::string bytes = read_file(file);
    bytes[data_offset(file, replicated)] ^= 0x01;
    write_file(file, bytes);
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("model3-mp4.safetensors: " + replicated + " (replicated) has xxh3"));
  }
  SECTION("a rank file of another run (another checkpoint, the same shapes) under a listed name") {
    generate_checkpoint(d.dir / "other", joined(kCheckpoint, {"--seed", "77"}));
    convert(d.dir / "other", d.dir / "other4", 4);
    fs::copy_file(d.dir / "other4" / "model2-mp4.safetensors", d.from / "model2-mp4.safetensors",
                  fs::copy_options::overwrite_existing);
    const auto r = d.reshard(1);
    CHECK(r.exit_code == 4);
    // Its replicated copies differ from the other ranks', its own pieces from their checksums.
    CHECK_THAT(r.err, Catch::Contains("model2-mp4.safetensors: "));
    CHECK_THAT(r.err, Catch::Contains("the manifest says"));
  }
  SECTION("rank files of another mp mixed in") {
    convert(d.dir / "in", d.dir / "mp2", 2);
    fs::copy_file(d.dir / "mp2" / "model0-mp2.safetensors", d.from / "model0-mp2.safetensors");
    const auto r = d.reshard(1);
    CHECK(r.exit_code == 4);
    CHECK_THAT(
        r.err,
        Catch::Contains(
            "model0-mp2.safetensors: a tensor file the manifest does not list (the folder's set is mp=4"));
  }
  SECTION("a rank file of another set under a listed name") {
    convert(d.dir / "in", d.dir / "mp2", 2);
    fs::copy_file(d.dir / "mp2" / "model1-mp2.safetensors", d.from / "model1-mp4.safetensors",
                  fs::copy_options::overwrite_existing);
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("model1-mp4.safetensors"));
  }
  SECTION("no manifest") {
    fs::remove(d.from / "shardwise-manifest.json");
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("shardwise-manifest.json: missing: reshard reads folders shardwise "
                                      "wrote, or others with --rules"));
  }
  SECTION("a manifest written before version 3") {
    auto manifest = nlohmann::json::parse(read_file(d.from / "shardwise-manifest.json"));
    manifest["shardwise_manifest"] = 2;
    write_file(d.from / "shardwise-manifest.json", manifest.dump());
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("has no recorded cut"));
  }
  SECTION("a new mp the tensors cannot be cut for") {
    const auto r = d.reshard(3);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("cannot reshard"));
    // Every expert tensor of the scope in one line, not one line each.
    CHECK_THAT(
        r.err,
        Catch::Contains(
            "owned tensors cannot be spread over mp=3: their scope counts 8, not a multiple of 3 (e.g. "));
    CHECK_THAT(r.err, Catch::Contains(": owned (0 of 8))"));
    CHECK(r.err.find("cannot be spread") == r.err.rfind("cannot be spread"));
    CHECK_THAT(r.err, Catch::Contains("is not a multiple of 3"));
  }
  SECTION("an mp out of range is a usage error") { CHECK(d.reshard(0).exit_code == 2); }
  CHECK(!holds_rank_file(d.out));
}

// Merging (mp 4 into 2) reads every old piece whole, once: its checksum is compared as it is
// gathered, and a new file that read a damaged piece never gets its final name. The files that read
// only sound pieces are written; the run fails naming every damaged piece, and a --resume once the
// old folder is repaired writes the rest. Splitting (4 into 8) reads parts of pieces: those are
// compared before anything is written.
TEST_CASE("reshard refuses every new file that read a damaged old piece and names each piece") {
  Damaged d;
  SECTION("a flipped byte in a split piece: the manifest's checksum names the file and the tensor") {
    const auto manifest = nlohmann::json::parse(read_file(d.from / "shardwise-manifest.json"));
    std::string split;
    std::string recorded;
    for (const auto& t : manifest["outputs"][1]["tensors"]) {
      if (t["cut"].is_object() && t["cut"].contains("split")) {
        split = t["name"];
        recorded = t["xxh3"];
        break;
      }
    }
    REQUIRE(!split.empty());
    const fs::path file = d.from / "model1-mp4.safetensors";
    std::string bytes = read_file(file);
    bytes[data_offset(file, split) + 1] ^= 0x20;
    write_file(file, bytes);
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("its rank files do not hold what its manifest records (1 problem)"));
    CHECK_THAT(r.err, Catch::Contains("model1-mp4.safetensors: " + split + " has xxh3 "));
    CHECK_THAT(r.err,
               Catch::Contains(", the manifest says " + recorded + " (the file was damaged or replaced)"));
    // Old rank 1 goes into new rank 0.
    CHECK(!fs::exists(d.out / "model0-mp2.safetensors"));
  }
  SECTION("merging: pieces checked as they are gathered, the sound file written, --resume after the repair") {
    convert(d.dir / "in", d.dir / "mp2", 2);
    // Old ranks 0 and 1 make new rank 0: a split piece of dim 1 (rows interleave) and an owned one.
    const auto [split, split_xxh3] = find_tensor(d.from, 1, [](const auto& cut) { return split_on(cut, 1); });
    const auto [expert, expert_xxh3] = find_tensor(d.from, 0, owned);
    REQUIRE(!split.empty());
    REQUIRE(!expert.empty());
    const fs::path file0 = d.from / "model0-mp4.safetensors";
    const fs::path file1 = d.from / "model1-mp4.safetensors";
    const std::string sound0 = read_file(file0);
    const std::string sound1 = read_file(file1);
    flip(file1, split, data_size(file1, split) - 1);  // its last byte: the whole piece is hashed
    flip(file0, expert, 0);
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("its rank files do not hold what its manifest records (2 problems)"));
    CHECK_THAT(r.err, Catch::Contains("model0-mp4.safetensors: " + expert + " has xxh3 "));
    CHECK_THAT(r.err,
               Catch::Contains(", the manifest says " + expert_xxh3 + " (the file was damaged or replaced)"));
    CHECK_THAT(r.err, Catch::Contains("model1-mp4.safetensors: " + split + " has xxh3 "));
    CHECK_THAT(r.err,
               Catch::Contains(", the manifest says " + split_xxh3 + " (the file was damaged or replaced)"));
    CHECK_THAT(r.err,
               Catch::Contains("\n1 of the 2 new files read a damaged piece and were not written, the others "
                               "were: replace the damaged rank files, then run again with --resume"));
    // No temporary left either; the manifest does not call the folder complete.
    CHECK(files_of(d.out) == std::set<std::string>{"model1-mp2.safetensors"});
    CHECK(read_file(d.out / "model1-mp2.safetensors") == read_file(d.dir / "mp2" / "model1-mp2.safetensors"));
    CHECK(nlohmann::json::parse(read_file(d.out / "shardwise-manifest.json"))["complete"] == false);
    write_file(file0, sound0);
    write_file(file1, sound1);
    d.require_resume_completes();
  }
  SECTION("splitting: a flipped byte in a split piece is refused before anything is written") {
    const auto [split, recorded] = find_tensor(d.from, 2, [](const auto& cut) { return split_on(cut, 0); });
    REQUIRE(!split.empty());
    const fs::path file = d.from / "model2-mp4.safetensors";
    flip(file, split, data_size(file, split) / 2);
    const auto r = d.reshard(8);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("its rank files do not hold what its manifest records (1 problem)"));
    CHECK_THAT(r.err, Catch::Contains("model2-mp4.safetensors: " + split + " has xxh3 "));
    CHECK_THAT(r.err,
               Catch::Contains(", the manifest says " + recorded + " (the file was damaged or replaced)"));
    CHECK_THAT(r.err, Catch::EndsWith("(the file was damaged or replaced)\nNothing was written.\n"));
    CHECK(!holds_rank_file(d.out));
  }
  SECTION("splitting: the error also names damaged pieces that would have been checked while gathered") {
    const auto [split, split_xxh3] = find_tensor(d.from, 1, [](const auto& cut) { return split_on(cut, 1); });
    const auto [expert, expert_xxh3] = find_tensor(d.from, 3, owned);
    REQUIRE(!split.empty());
    REQUIRE(!expert.empty());
    flip(d.from / "model1-mp4.safetensors", split, 0);
    flip(d.from / "model3-mp4.safetensors", expert, 1);
    const auto r = d.reshard(8);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("(2 problems)"));
    CHECK_THAT(r.err, Catch::Contains("model1-mp4.safetensors: " + split + " has xxh3 "));
    CHECK_THAT(r.err, Catch::Contains("model3-mp4.safetensors: " + expert + " has xxh3 "));
    CHECK(!holds_rank_file(d.out));
  }
}

// A run hashes the replicated copies while it writes: the copy every new file reads (old rank 0's)
// as it is gathered, the other ranks' beside the writers. No new file is committed before every
// copy is known sound (each holds every replicated tensor); a dry run, which writes nothing, hashes
// them while planning.
TEST_CASE("reshard refuses a damaged replicated copy before any new file is committed") {
  Damaged d;
  const auto replicated = [](const nlohmann::json& cut) { return cut == "replicated"; };
  SECTION("a copy no new file reads: every new file refused, the copy named, --resume after the repair") {
    convert(d.dir / "in", d.dir / "mp2", 2);
    const auto [name, recorded] = find_tensor(d.from, 3, replicated);
    REQUIRE(!name.empty());
    const fs::path file = d.from / "model3-mp4.safetensors";
    const std::string sound = read_file(file);
    flip(file, name, data_size(file, name) - 1);
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("its rank files do not hold what its manifest records (1 problem)"));
    CHECK_THAT(r.err, Catch::Contains("model3-mp4.safetensors: " + name + " (replicated) has xxh3 "));
    CHECK_THAT(r.err, Catch::Contains(", the manifest says " + recorded + "\n"));
    CHECK_THAT(r.err,
               Catch::EndsWith("\nNone of the 2 new files was written: replace the damaged rank files, then "
                               "run again with --resume.\n"));
    // No temporary left either; the manifest does not call the folder complete.
    CHECK(files_of(d.out).empty());
    CHECK(nlohmann::json::parse(read_file(d.out / "shardwise-manifest.json"))["complete"] == false);
    write_file(file, sound);
    d.require_resume_completes();
  }
  SECTION("the copy every new file reads: named once, nothing written") {
    const auto [name, recorded] = find_tensor(d.from, 0, replicated);
    REQUIRE(!name.empty());
    const fs::path file = d.from / "model0-mp4.safetensors";
    flip(file, name, 0);
    const auto r = d.reshard(2);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("its rank files do not hold what its manifest records (1 problem)"));
    CHECK_THAT(r.err, Catch::Contains("model0-mp4.safetensors: " + name + " (replicated) has xxh3 "));
    CHECK_THAT(r.err, Catch::Contains(", the manifest says " + recorded + "\n"));
    CHECK_THAT(r.err,
               Catch::EndsWith("\nNone of the 2 new files was written: replace the damaged rank files, then "
                               "run again with --resume.\n"));
    CHECK(!holds_rank_file(d.out));
  }
  SECTION("a dry run: refused while planning") {
    const auto [name, recorded] = find_tensor(d.from, 2, replicated);
    REQUIRE(!name.empty());
    flip(d.from / "model2-mp4.safetensors", name, 1);
    const auto r = run_shardwise({"reshard", "--from", d.from.string(), "-m", "2", "--dry-run"});
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("model2-mp4.safetensors: " + name + " (replicated) has xxh3 "));
    CHECK_THAT(r.err, Catch::Contains(", the manifest says " + recorded));
    CHECK(r.out.empty());
  }
}

TEST_CASE("reshard --dry-run prints which old pieces make each new tensor, as text and JSON") {
  Damaged d;
  const auto text = run_shardwise({"reshard", "--from", d.from.string(), "-m", "2", "--dry-run"});
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(text.out, Catch::Contains("(mp=4) -> mp=2: 2 files"));
  CHECK_THAT(text.out, Catch::Contains("model0-mp2.safetensors (rank 0"));
  CHECK_THAT(text.out, Catch::Contains("<- model0-mp4.safetensors[0:"));
  CHECK_THAT(text.out, Catch::Contains("+ model1-mp4.safetensors[0:"));
  const auto json =
      run_shardwise({"reshard", "--from", d.from.string(), "-m", "8", "--dry-run", "--format", "json"});
  REQUIRE(json.exit_code == 0);
  const auto plan = nlohmann::json::parse(json.out);
  CHECK(plan["from_model_parallel"] == 4);
  CHECK(plan["model_parallel"] == 8);
  REQUIRE(plan["outputs"].size() == 8);
  CHECK(plan["outputs"][7]["file"] == "model7-mp8.safetensors");
  CHECK(!holds_rank_file(d.out));
}

namespace {

// I8 tensors written as F4 (rules `transforms:`): a cut of the F4 last dim must fall on a byte.
const std::string kReinterpretRules =
    shardwise::test::source_dir() + "/tests/data/rules/fp4-reinterpret.yaml";

}  // namespace

TEST_CASE("reshard of reinterpreted tensors: byte for byte, and never a cut inside a byte") {
  using shardwise::test::build_safetensors;
  using shardwise::test::pattern_bytes;
  TempDir dir;
  fs::create_directories(dir / "in");
  write_file(dir / "in" / "model.safetensors",
             build_safetensors({{"layers.0.w1.weight", "I8", {12, 3}, pattern_bytes(36, 1)},
                                {"layers.0.w2.weight", "I8", {2, 12}, pattern_bytes(24, 2)},
                                {"layers.0.experts.3.w1.weight", "I8", {2, 5}, pattern_bytes(10, 3)},
                                {"layers.0.norm.weight", "BF16", {4}, pattern_bytes(8, 4)}}));
  for (const int mp : {1, 2, 4}) {
    const auto r = run_shardwise({"convert", "-i", (dir / "in").string(), "-o", (dir / fmt_mp(mp)).string(),
                                  "-r", kReinterpretRules, "-m", std::to_string(mp), "-q"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
  for (const auto& [a, b] : std::vector<std::pair<int, int>>{{2, 4}, {4, 1}, {1, 2}, {4, 2}}) {
    INFO("mp " << a << " -> " << b);
    const fs::path out = dir / ("reshard-" + std::to_string(a) + "-" + std::to_string(b));
    const auto r = run_shardwise(
        {"reshard", "--from", (dir / fmt_mp(a)).string(), "-o", out.string(), "-m", std::to_string(b), "-q"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    require_same_files(dir / fmt_mp(b), out);
  }
  // mp 8: w2 is F4 [2, 24], 3 per rank would cut a byte (2 F4 per I8); 12 rows of w1 and 4 experts
  // do not divide either. A direct conversion refuses the same.
  const auto r = run_shardwise(
      {"reshard", "--from", (dir / "mp2").string(), "-o", (dir / "out8").string(), "-m", "8", "-q"});
  CHECK(r.exit_code == 4);
  CHECK_THAT(r.err, Catch::Contains("layers.0.w2.weight: 24 entries of dim 1 cannot be split over mp=8 "
                                    "(shape [2, 24]: 3 per rank cuts units of 2)"));
  CHECK_THAT(r.err, Catch::Contains("layers.0.w1.weight: 12 entries of dim 0 cannot be split over mp=8 "
                                    "(shape [12, 6]: 12 is not a multiple of 8)"));
  CHECK_THAT(r.err,
             Catch::Contains("layers.0.experts.3.w1.weight: owned (3 of 4): 4 cannot be spread over mp=8"));
  CHECK(!holds_rank_file(dir / "out8"));
  const auto direct = run_shardwise({"convert", "-i", (dir / "in").string(), "-o", (dir / "direct8").string(),
                                     "-r", kReinterpretRules, "-m", "8", "-q"});
  CHECK(direct.exit_code == 4);
}

TEST_CASE("reshard of a folder without a manifest, with the rules that wrote it and their parameters") {
  TempDir dir;
  generate_checkpoint(dir / "in", kCheckpoint);
  for (const int mp : {1, 2, 4}) convert(dir / "in", dir / fmt_mp(mp), mp);
  for (const auto& [a, b] : std::vector<std::pair<int, int>>{{4, 2}, {2, 4}, {4, 1}}) {
    INFO("mp " << a << " -> " << b);
    const fs::path bare = dir / ("bare" + std::to_string(a));
    if (!fs::exists(bare)) {
      fs::copy(dir / fmt_mp(a), bare);
      fs::remove(bare / "shardwise-manifest.json");
    }
    const fs::path out = dir / ("reshard-" + std::to_string(a) + "-" + std::to_string(b));
    const auto r = run_shardwise({"reshard", "--from", bare.string(), "-o", out.string(), "-m",
                                  std::to_string(b), "-r", "deepseek-v4-w4a16", "--n-experts", "8", "-q"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    require_same_files(dir / fmt_mp(b), out);
  }
  SECTION("a name the rules do not place as it is") {
    // The rank files as the rules' input names: renamed by them, so not a folder they wrote.
    const auto r = run_shardwise({"reshard", "--from", (dir / "in").string(), "-o", (dir / "x").string(),
                                  "-m", "2", "-r", "deepseek-v4-w4a16", "--n-experts", "8", "-q"});
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains(
                          "no rank files named as the rules name them (model{rank}-mp{mp}.safetensors)"));
  }
  SECTION("rules that do not describe the folder: every name they cannot place, and why") {
    const auto r = run_shardwise({"reshard", "--from", (dir / "bare4").string(), "-o", (dir / "x").string(),
                                  "-m", "2", "-r", kReinterpretRules, "-q"});
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("names the rules do not place as they are"));
    CHECK_THAT(r.err, Catch::Contains("embed.weight (all 4 rank files): cannot be placed: "));
    CHECK(r.err.find("embed.weight (") == r.err.rfind("embed.weight ("));  // once, not per rank file
  }
  SECTION("parameters without --rules are a usage error") {
    const auto r = run_shardwise({"reshard", "--from", (dir / "mp2").string(), "-o", (dir / "x").string(),
                                  "-m", "1", "--n-experts", "8"});
    CHECK(r.exit_code == 2);
  }
  SECTION("rank files of two mps") {
    const fs::path bare = dir / "bare-mixed";
    fs::copy(dir / "bare4", bare);
    fs::copy_file(dir / "mp2" / "model0-mp2.safetensors", bare / "model0-mp2.safetensors");
    const auto r = run_shardwise({"reshard", "--from", bare.string(), "-o", (dir / "x").string(), "-m", "2",
                                  "-r", "deepseek-v4-w4a16", "--n-experts", "8", "-q"});
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err,
               Catch::Contains(
                   "rank files of 2 model parallelisms (model0-mp2.safetensors and model0-mp4.safetensors)"));
  }
  CHECK(!holds_rank_file(dir / "x"));
}

// Rank-file names found by the rules' `output.file` (docs/reshard.md): regex metacharacters in it
// are literal text, matching takes time linear in a name however the template is crafted, and a
// number in a name that does not fit in 64 bits is refused naming the file.
TEST_CASE("reshard --rules: rank files named by a hostile output template, or with a huge number") {
  TempDir dir;
  SECTION("metacharacters in output.file: the files are found by their literal names") {
    generate_checkpoint(dir / "in", kCheckpoint);
    write_file(dir / "meta.yaml",
               "shardwise: 1\nname: meta\nextends: deepseek-v4-w4a16\n"
               "output: {file: \"m(.*)+[{rank}]^$|?-of{mp}.st\"}\n");
    for (const int mp : {2, 4}) {
      const auto r =
          run_shardwise({"convert", "-i", (dir / "in").string(), "-o", (dir / fmt_mp(mp)).string(), "-r",
                         (dir / "meta.yaml").string(), "--n-experts", "8", "-m", std::to_string(mp), "-q"});
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
    }
    REQUIRE(fs::exists(dir / "mp4" / "m(.*)+[3]^$|?-of4.st"));
    fs::remove(dir / "mp4" / "shardwise-manifest.json");
    // Named as the template's regex reading would take it: ignored.
    fs::copy_file(dir / "mp4" / "m(.*)+[3]^$|?-of4.st", dir / "mp4" / "mxx+[3]^$|?-of4.st");
    fs::copy_file(dir / "mp4" / "m(.*)+[3]^$|?-of4.st", dir / "mp4" / "m(.*)+[3]-of4.st");
    const auto r = run_shardwise({"reshard", "--from", (dir / "mp4").string(), "-o", (dir / "out").string(),
                                  "-m", "2", "-r", (dir / "meta.yaml").string(), "--n-experts", "8", "-q"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    require_same_files(dir / "mp2", dir / "out");
  }
  SECTION("adjacent numbers and a long run of digits: refused at once, not backtracked") {
    std::string file = "m(.*)+";
    for (int i = 0; i < 30; ++i) file += "{rank}";
    write_file(dir / "crafted.yaml", "shardwise: 1\nname: crafted\noutput: {file: \"" + file +
                                         "{mp}x.st\"}\nkeys:\n  - {match: '(?P<key>[^.]+)$'}\n"
                                         "table:\n  a: {split: replicate}\n");
    fs::create_directories(dir / "in");
    write_file(dir / "in" / ("m(.*)+" + std::string(60, '1') + "y.st"), "");
    // `timeout`: a backtracking matcher would take years; the limit only turns that into a failure.
    const auto r = run_command({"/usr/bin/timeout", "120", shardwise::test::shardwise_binary(), "reshard",
                                "--from", (dir / "in").string(), "-o", (dir / "x").string(), "-m", "2", "-r",
                                (dir / "crafted.yaml").string(), "-q"});
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("no rank files named as the rules name them"));
  }
  SECTION("a rank beyond 64 bits in a file name: the file named, exit 4") {
    fs::create_directories(dir / "in");
    const std::string name = "model" + std::string(60, '9') + "-mp2.safetensors";
    write_file(dir / "in" / name, "");
    const auto r = run_shardwise({"reshard", "--from", (dir / "in").string(), "-o", (dir / "x").string(),
                                  "-m", "2", "-r", "deepseek-v4-w4a16", "--n-experts", "8", "-q"});
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err,
               Catch::Contains((dir / "in" / name).string() +
                               ": named as the rules name rank files (model{rank}-mp{mp}.safetensors), but "
                               "its {rank} " +
                               std::string(60, '9') + " does not fit in 64 bits"));
  }
  CHECK(!holds_rank_file(dir / "x"));
}

// Transformed outputs: a DeepSeek-V4-format checkpoint (FP8 weights with E8M0 block scales, FP4
// experts) converted with wo_a dequantised and the experts re-quantised; the BF16 wo_a may only
// be cut again on its 128-row blocks, as a direct conversion requires. A mirrored folder has no
// ranks to reshard.
TEST_CASE(
    "reshard of block-transformed outputs: byte for byte, never off the block grid, and mirrored folders "
    "refused") {
  TempDir dir;
  const fs::path in = dir / "in";
  shardwise::test::generate_official_checkpoint(
      in, {"--format", "v4", "--experts", "8", "--files", "2", "--index"});
  const auto convert_v4 = [&](int mp) {
    const fs::path out = dir / ("v4-" + fmt_mp(mp));
    const auto result =
        run_shardwise({"convert", "-r", "deepseek-v4", "-i", in.string(), "-o", out.string(), "--n-experts",
                       "8", "-m", std::to_string(mp), "--expert-dtype", "fp8", "-q"});
    INFO(result.err);
    REQUIRE(result.exit_code == 0);
    return out;
  };
  const fs::path from = convert_v4(2);
  const fs::path direct = convert_v4(8);
  const fs::path resharded = dir / "resharded";
  const auto result =
      run_shardwise({"reshard", "--from", from.string(), "-o", resharded.string(), "-m", "8", "-q"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  require_same_files(direct, resharded);

  // wo_a is [1024, 512] in the generated checkpoint: 64 rows per rank at mp 16 cut its blocks.
  const auto refused =
      run_shardwise({"reshard", "--from", from.string(), "-o", (dir / "r16").string(), "-m", "16", "-q"});
  CHECK(refused.exit_code == 4);
  CHECK_THAT(refused.err, Catch::Contains("wo_a.weight: 1024 entries of dim 0 cannot be split over mp=16"));
  CHECK_THAT(refused.err, Catch::Contains("64 per rank cuts units of 128"));

  shardwise::test::generate_official_checkpoint(
      dir / "v3", {"--format", "v3", "--experts", "8", "--files", "2", "--index"});
  const fs::path bf16 = dir / "bf16";
  REQUIRE(run_shardwise(
              {"convert", "-r", "fp8-cast-bf16", "-i", (dir / "v3").string(), "-o", bf16.string(), "-q"})
              .exit_code == 0);
  const auto mirrored =
      run_shardwise({"reshard", "--from", bf16.string(), "-o", (dir / "rb").string(), "-m", "2"});
  CHECK(mirrored.exit_code == 4);
  CHECK_THAT(mirrored.err, Catch::Contains("mirrors the input's files"));
  CHECK(!fs::exists(dir / "rb" / "model0-mp2.safetensors"));
}
