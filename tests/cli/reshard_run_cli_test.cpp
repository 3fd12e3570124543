// `shardwise reshard` runs as convert's: --resume after a failed run, disjoint --ranks runs into
// one folder, --distributed shares, the dry run's views, and `verify` of what it wrote. Expected
// bytes: a direct conversion at the new mp.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/faults.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::convert_args;
using shardwise::test::generate_checkpoint;
using shardwise::test::read_file;
using shardwise::test::run_command;
using shardwise::test::run_shardwise;
using shardwise::test::shardwise_binary;
using shardwise::test::TempDir;
using shardwise::test::with_fault;
using Args = std::vector<std::string>;

namespace {

// A tiny checkpoint converted at mp 2 and, for comparison, at mp 4.
struct Folders {
  TempDir dir;
  fs::path in = dir / "in";
  fs::path from = dir / "mp2";
  fs::path direct = dir / "mp4";
  fs::path out = dir / "out";
  Folders() {
    generate_checkpoint(in, {"--layers", "2", "--experts", "8"});
    for (const auto& [mp, folder] : {std::pair{"2", from}, std::pair{"4", direct}}) {
      const auto r = run_command(convert_args(in, folder, {}, mp));
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
    }
  }
  Args reshard(const Args& extra) const {
    Args args = {shardwise_binary(), "reshard", "--from", from.string(), "-o", out.string(), "-m", "4", "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

// Every file of a folder by name, the lock aside.
std::map<std::string, std::string> folder_files(const fs::path& folder) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (name != ".shardwise.lock") files[name] = read_file(e.path());
  }
  return files;
}

// The direct conversion's files (its manifest aside) are in `actual`, byte for byte, and its manifest is
// complete and lists them.
void require_as_direct(const fs::path& direct, const fs::path& actual) {
  std::map<std::string, std::string> expected = folder_files(direct);
  std::map<std::string, std::string> got = folder_files(actual);
  REQUIRE(got.count("shardwise-manifest.json") == 1);
  const auto manifest = nlohmann::json::parse(got["shardwise-manifest.json"]);
  CHECK(manifest["complete"] == true);
  expected.erase("shardwise-manifest.json");
  got.erase("shardwise-manifest.json");
  std::set<std::string> names;
  for (const auto& [name, bytes] : got) names.insert(name);
  std::set<std::string> wanted;
  for (const auto& [name, bytes] : expected) wanted.insert(name);
  REQUIRE(names == wanted);
  for (const auto& [name, bytes] : expected) {
    INFO(name);
    CHECK(got[name] == bytes);
  }
}

}  // namespace

TEST_CASE("reshard --resume after a failed run keeps the finished files and writes the same bytes") {
  Folders f;
  // One thread: rank files in order, so ranks 0 and 1 are under their final names when rank 2's fails.
  const auto failed = run_command(with_fault("rename,EIO,1,model2-mp4", f.reshard({"-t", "1"})));
  CHECK(failed.exit_code != 0);
  CHECK(fs::exists(f.out / "model1-mp4.safetensors"));
  CHECK(!fs::exists(f.out / "model2-mp4.safetensors"));
  const auto manifest = nlohmann::json::parse(read_file(f.out / "shardwise-manifest.json"));
  CHECK(manifest["complete"] == false);

  Args loud = f.reshard({"--resume", "-t", "1"});
  loud.erase(std::find(loud.begin(), loud.end(), "-q"));
  const auto resumed = run_command(loud);
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Catch::Contains("wrote 2 files"));
  CHECK_THAT(resumed.err, Catch::Contains("; kept 2 files an earlier run finished"));
  require_as_direct(f.direct, f.out);

  SECTION("a resume into a folder of another reshard is refused, saying what changed") {
    const auto other = run_shardwise(
        {"reshard", "--from", f.from.string(), "-o", f.out.string(), "-m", "1", "--resume", "-q"});
    CHECK(other.exit_code == 5);
    CHECK_THAT(other.err, Catch::Contains("cannot resume: the parameter mp changed: 4 -> 1"));
  }
}

TEST_CASE("reshard --ranks: disjoint runs into one folder complete it together") {
  Folders f;
  const auto first = run_command(f.reshard({"--ranks", "0,2"}));
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  CHECK(!fs::exists(f.out / "model1-mp4.safetensors"));
  CHECK(nlohmann::json::parse(read_file(f.out / "shardwise-manifest.json"))["complete"] == false);
  const auto second = run_command(f.reshard({"--ranks", "1,3"}));
  INFO(second.err);
  REQUIRE(second.exit_code == 0);
  require_as_direct(f.direct, f.out);
  for (const auto& e : fs::directory_iterator(f.out)) {
    CHECK(e.path().filename().string().find("shardwise-manifest.ranks") ==
          std::string::npos);  // fragments folded in
  }
  const auto bad = run_command(f.reshard({"--ranks", "4"}));
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("4"));
}

TEST_CASE("reshard --distributed: each process writes its share, the last completes the manifest") {
  Folders f;
  std::set<std::string> written;
  for (const std::string index : {"0", "1"}) {
    Args args = {"/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "SLURM_PROCID=" + index, "SLURM_NTASKS=2"};
    const Args run = f.reshard({"--distributed", "--manifest-wait", "1"});
    args.insert(args.end(), run.begin(), run.end());
    const auto r = run_command(args);
    INFO(r.err);
    // Process 0 runs first here: it cannot wait for process 1, which has not started.
    if (index == "0") {
      CHECK(r.exit_code == 5);
      CHECK_THAT(r.err, Catch::Contains("waiting for the other processes"));
    } else {
      CHECK(r.exit_code == 0);
    }
    for (const auto& e : fs::directory_iterator(f.out)) {
      const std::string name = e.path().filename().string();
      if (name.ends_with(".safetensors")) written.insert(name);
    }
    if (index == "0") {
      CHECK(!written.empty());
      CHECK(written.size() < 4);  // a share, not the whole
    }
  }
  require_as_direct(f.direct, f.out);
}

TEST_CASE("reshard --dry-run narrows and summarises as plan does") {
  Folders f;
  const auto text = run_shardwise({"reshard", "--from", f.from.string(), "-m", "4", "-n", "--rank", "1"});
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(text.out, Catch::Contains("model1-mp4.safetensors (rank 1"));
  CHECK(text.out.find("model0-mp4.safetensors (rank 0") == std::string::npos);
  CHECK_THAT(text.out, Catch::Contains("new tensors (--rank 1)"));

  const auto owned =
      run_shardwise({"reshard", "--from", f.from.string(), "-m", "4", "-n", "--rule", "owned"});
  REQUIRE(owned.exit_code == 0);
  CHECK_THAT(owned.out, Catch::Contains(" owned "));
  CHECK(owned.out.find(" replicated <-") == std::string::npos);
  CHECK(owned.out.find(" split dim") == std::string::npos);

  const auto json = run_shardwise({"reshard", "--from", f.from.string(), "-m", "4", "-n", "--format", "json",
                                   "--filter", "experts\\.3\\.", "--rank", "1"});
  REQUIRE(json.exit_code == 0);
  const auto doc = nlohmann::json::parse(json.out);
  REQUIRE(doc["outputs"].size() == 1);
  CHECK(doc["outputs"][0]["rank"] == 1);
  REQUIRE(!doc["outputs"][0]["tensors"].empty());
  for (const auto& t : doc["outputs"][0]["tensors"]) {
    CHECK(t["name"].get<std::string>().find("experts.3.") != std::string::npos);
  }

  const auto summary = run_shardwise({"reshard", "--from", f.from.string(), "-m", "4", "-n", "--summary"});
  REQUIRE(summary.exit_code == 0);
  CHECK_THAT(summary.out, Catch::Contains("by cut"));
  CHECK_THAT(summary.out, Catch::Contains("model3-mp4.safetensors"));
  CHECK_THAT(summary.out, Catch::Contains("reads 1 of 2 old files"));

  SECTION("what cannot apply is a usage error naming what exists") {
    const auto rank = run_shardwise({"reshard", "--from", f.from.string(), "-m", "4", "-n", "--rank", "4"});
    CHECK(rank.exit_code == 2);
    CHECK_THAT(rank.err, Catch::Contains("--rank 4: the reshard writes ranks 0 to 3 (mp=4)"));
    const auto rule =
        run_shardwise({"reshard", "--from", f.from.string(), "-m", "4", "-n", "--rule", "table[wq]"});
    CHECK(rule.exit_code == 2);
    CHECK_THAT(rule.err, Catch::Contains("a reshard selects by cut, and its tensors are cut as: "));
    const auto both =
        run_shardwise({"reshard", "--from", f.from.string(), "-m", "4", "-n", "--summary", "--rank", "1"});
    CHECK(both.exit_code == 2);
    const auto written =
        run_shardwise({"reshard", "--from", f.from.string(), "-m", "4", "-o", f.out.string(), "--rank", "1"});
    CHECK(written.exit_code == 2);
  }
}

TEST_CASE("verify of a reshard's output: against its manifest and against the original checkpoint") {
  Folders f;
  const auto r = run_command(f.reshard({}));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto by_manifest = run_shardwise({"verify", "-o", f.out.string(), "--manifest-only", "-q"});
  INFO(by_manifest.out << by_manifest.err);
  CHECK(by_manifest.exit_code == 0);
  const auto by_plan = run_shardwise(
      {"verify", "-o", f.out.string(), "--hf-ckpt-path", f.in.string(), "--n-experts", "8", "-m", "4", "-q"});
  INFO(by_plan.out << by_plan.err);
  CHECK(by_plan.exit_code == 0);

  // A byte changed after the reshard is found by both.
  const fs::path file = f.out / "model2-mp4.safetensors";
  std::string bytes = read_file(file);
  bytes[bytes.size() - 3] ^= 0x01;
  shardwise::test::write_file(file, bytes);
  CHECK(run_shardwise({"verify", "-o", f.out.string(), "--manifest-only", "-q"}).exit_code == 6);
  CHECK(run_shardwise({"verify", "-o", f.out.string(), "--hf-ckpt-path", f.in.string(), "--n-experts", "8",
                       "-m", "4", "-q"})
            .exit_code == 6);
}

TEST_CASE("reshard -m 1 with two threads: one file, gathered and written side by side, the same bytes") {
  Folders f;
  const fs::path one = f.dir / "mp1";
  REQUIRE(
      run_shardwise({"convert", "-i", f.in.string(), "-o", one.string(), "--n-experts", "8", "-m", "1", "-q"})
          .exit_code == 0);
  for (const std::string threads : {"1", "2", "3"}) {
    const fs::path out = f.dir / ("to1-" + threads);
    const auto r =
        run_shardwise({"reshard", "--from", f.from.string(), "-o", out.string(), "-m", "1", "-t", threads});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.err, Catch::Contains(", " + threads + " thread"));
    require_as_direct(one, out);
  }
}

// --page-cache drop, as for convert: the new files are waited for and dropped as they are written,
// the old pieces once read for the last time; the bytes are the same, a write-back error is the
// write's (exit 5, nothing under a final name), failed advice is no error.
TEST_CASE("reshard --page-cache drop: the same bytes, write-back errors exit 5, failed advice is ignored") {
  Folders f;
  for (const std::string mode : {"drop", "keep", "auto"}) {
    for (const std::string threads : {"1", "2"}) {
      CAPTURE(mode, threads);
      fs::remove_all(f.out);
      const auto r = run_command(f.reshard({"--page-cache", mode, "-t", threads}));
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
      require_as_direct(f.direct, f.out);
    }
  }
  // Merged into one file by two threads (one gathers, one writes behind): every old piece read whole.
  const fs::path one = f.dir / "mp1";
  REQUIRE(
      run_shardwise({"convert", "-i", f.in.string(), "-o", one.string(), "--n-experts", "8", "-m", "1", "-q"})
          .exit_code == 0);
  const fs::path merged = f.dir / "merged";
  const auto r = run_shardwise({"reshard", "--from", f.from.string(), "-o", merged.string(), "-m", "1", "-t",
                                "2", "-q", "--page-cache", "drop"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  require_as_direct(one, merged);

  struct WriteBackFault {
    std::string fault;
    std::string words;
    std::string file;  // the new file it hits, never under its final name
  };
  for (const WriteBackFault& w : std::vector<WriteBackFault>{
           {"sync_file_range,EIO,1,.model1-mp4", ".model1-mp4.safetensors.partial: Input/output error",
            "model1-mp4.safetensors"},
           {"sync_file_range,ENOSPC,2,.model3-mp4",
            ".model3-mp4.safetensors.partial: No space left on device", "model3-mp4.safetensors"}}) {
    CAPTURE(w.fault);
    fs::remove_all(f.out);
    const auto failed = run_command(with_fault(w.fault, f.reshard({"--page-cache", "drop"})));
    CHECK(failed.exit_code == 5);
    CHECK_THAT(failed.err, Catch::StartsWith("shardwise: error: cannot write back "));
    CHECK_THAT(failed.err, Catch::Contains(w.words));
    for (const auto& [name, bytes] : folder_files(f.out)) {
      CAPTURE(name);
      CHECK(name.find(".partial") == std::string::npos);
    }
    CHECK(folder_files(f.out).count(w.file) == 0);
  }
  for (const std::string fault : {"fadvise,EIO,1,/mp2/", "fadvise,EIO,1,.model"}) {
    CAPTURE(fault);
    fs::remove_all(f.out);
    const auto run = run_command(with_fault(fault, f.reshard({"--page-cache", "drop"})));
    CHECK(run.exit_code == 0);
    CHECK(run.err.empty());
    require_as_direct(f.direct, f.out);
  }
  CHECK(run_command(f.reshard({"--page-cache", "sometimes"})).exit_code == 2);
}
