// Every OS error path of `shardwise convert`: the fault-injection shim makes one kind of system call
// fail on one file (EIO, ENOSPC, EACCES, short writes and reads, a disk filling up mid-write), at
// the first or a later call. For each: exit 5, a message naming the path with the OS's words, no
// temporary left, no incomplete file under a final name, and a rerun that completes the same output.
// Short transfers alone are no error: the run retries them and writes the same bytes.

#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cli/faults.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::Args;
using shardwise::test::convert_args;
using shardwise::test::folder_files;
using shardwise::test::generate_checkpoint;
using shardwise::test::run_command;
using shardwise::test::TempDir;
using shardwise::test::with_fault;

namespace {

// Every run of these tests writes on two threads.
const Args kTwoThreads = {"--threads", "2"};

// The files a failed run left in `out`: none when it failed before making the folder.
std::map<std::string, std::string> files_left(const fs::path& out) {
  return fs::exists(out) ? folder_files(out) : std::map<std::string, std::string>{};
}

struct Folders {
  TempDir dir;
  fs::path in = dir / "in";
  fs::path reference = dir / "reference";
  std::map<std::string, std::string> expected;

  Folders() {
    generate_checkpoint(in, {"--layers", "2", "--experts", "8"});
    REQUIRE(run_command(convert_args(in, reference, kTwoThreads)).exit_code == 0);
    expected = folder_files(reference);
    REQUIRE(expected.count("tokenizer.json") == 1);
  }
};

TEST_CASE(
    "convert: each OS error exits 5 naming the path, leaves no temporary nor incomplete file, and a rerun "
    "completes") {
  Folders f;
  struct Case {
    std::string fault;  // SHARDWISE_FAULT: OP,ERROR,N,PATH
    std::string path;   // the file the message must name
    std::string words;  // what it must say
  };
  // Write-back (sync_file_range) starts only once a file has 8 MiB written, more than these files
  // hold: its errors are tested with --page-cache drop below, which waits for it.
  const std::vector<Case> cases = {
      {"open,EACCES,1,.model1-mp4", ".model1-mp4.safetensors.partial", "cannot create"},
      {"fallocate,ENOSPC,1,.model2-mp4", ".model2-mp4.safetensors.partial", "No space left on device"},
      {"pwrite,EIO,2,.model0-mp4", ".model0-mp4.safetensors.partial", "Input/output error"},
      {"pwrite,ENOSPC,3,.model3-mp4", ".model3-mp4.safetensors.partial", "No space left on device"},
      {"pwrite,short+ENOSPC,2,.model1-mp4", ".model1-mp4.safetensors.partial", "No space left on device"},
      {"pwrite,EDQUOT,2,.model2-mp4", ".model2-mp4.safetensors.partial", "Disk quota exceeded"},
      {"fsync,EIO,1,.model2-mp4", ".model2-mp4.safetensors.partial", "cannot sync"},
      {"rename,EACCES,1,model3-mp4", "model3-mp4.safetensors", "Permission denied"},
      {"open,EACCES,1,.tokenizer.json", ".tokenizer.json.partial", "Permission denied"},
      {"write,ENOSPC,1,.tokenizer_config.json", ".tokenizer_config.json.partial", "No space left on device"},
      {"write,ENOSPC,1,shardwise-manifest", "shardwise-manifest.json.partial", "No space left on device"},
      {"write,EIO,4,shardwise-manifest", "shardwise-manifest.json.partial", "Input/output error"},
      {"rename,EIO,3,shardwise-manifest", "shardwise-manifest.json", "Input/output error"},
      {"mkdir,EACCES,1,/out", "/out", "Permission denied"},
      {"open,EACCES,1,.shardwise.lock", ".shardwise.lock", "Permission denied"},
      {"pread,EIO,5,/in/model", "/in/model", "Input/output error"},
      {"pread,EIO,1,/in/tokenizer.json", "/in/tokenizer.json", "Input/output error"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.fault);
    const fs::path out = f.dir / "out";
    fs::remove_all(out);
    const auto failed = run_command(with_fault(c.fault, convert_args(f.in, out, kTwoThreads)));
    CHECK(failed.exit_code == 5);
    CHECK_THAT(failed.err, Catch::StartsWith("shardwise: error: "));
    CHECK_THAT(failed.err, Catch::Contains(c.path));
    CHECK_THAT(failed.err, Catch::Contains(c.words));
    for (const auto& [name, bytes] : files_left(out)) {
      CAPTURE(name);
      CHECK(name.find(".partial") == std::string::npos);
      CHECK(name != ".shardwise.lock");
      // Whatever carries a final name is complete; the manifest is never marked complete.
      if (name == "shardwise-manifest.json") {
        CHECK_THAT(bytes, Catch::Contains("\"complete\":false"));
      } else {
        CHECK(bytes == f.expected.at(name));
      }
    }
    const auto rerun = run_command(convert_args(f.in, out, kTwoThreads));
    CHECK(rerun.exit_code == 0);
    CHECK(rerun.err.empty());
    CHECK(folder_files(out) == f.expected);
  }
}

// --page-cache drop waits for written ranges (sync_file_range) before dropping them: its errors
// are the write's errors. Failed advice (posix_fadvise) changes no byte and is no error. These
// files are smaller than the 64 MiB the drop lags behind the writer: each is waited for once,
// before its commit.
TEST_CASE("convert --page-cache drop: write-back errors exit 5 naming the file, failed advice is ignored") {
  Folders f;
  const fs::path out = f.dir / "out";
  auto drop_args = convert_args(f.in, out, kTwoThreads);
  drop_args.insert(drop_args.end(), {"--page-cache", "drop"});
  const std::vector<std::pair<std::string, std::string>> write_back_faults = {
      {"sync_file_range,EIO,1,.model0-mp4", ".model0-mp4.safetensors.partial: Input/output error"},
      {"sync_file_range,EIO,1,.model3-mp4", ".model3-mp4.safetensors.partial: Input/output error"},
      {"sync_file_range,ENOSPC,1,.model2-mp4", ".model2-mp4.safetensors.partial: No space left on device"}};
  for (const auto& [fault, words] : write_back_faults) {
    CAPTURE(fault);
    fs::remove_all(out);
    const auto failed = run_command(with_fault(fault, drop_args));
    CHECK(failed.exit_code == 5);
    CHECK_THAT(failed.err, Catch::StartsWith("shardwise: error: cannot write back "));
    CHECK_THAT(failed.err, Catch::Contains(words));
    for (const auto& [name, bytes] : files_left(out)) {
      CAPTURE(name);
      CHECK(name.find(".partial") == std::string::npos);
      if (name != "shardwise-manifest.json") CHECK(bytes == f.expected.at(name));
    }
  }
  for (const std::string fault : {"fadvise,EIO,1,/in/", "fadvise,EIO,1,.model"}) {
    CAPTURE(fault);
    fs::remove_all(out);
    const auto run = run_command(with_fault(fault, drop_args));
    CHECK(run.exit_code == 0);
    CHECK(run.err.empty());
    CHECK(folder_files(out) == f.expected);
  }
  // Each mode writes what the default (keep, for so small a checkpoint) wrote.
  for (const std::string mode : {"drop", "keep", "auto"}) {
    CAPTURE(mode);
    fs::remove_all(out);
    auto args = convert_args(f.in, out, kTwoThreads);
    args.insert(args.end(), {"--page-cache", mode});
    CHECK(run_command(args).exit_code == 0);
    CHECK(folder_files(out) == f.expected);
  }
  // verify drops what it read the same way, with the same verdict.
  const auto verified =
      run_command({shardwise::test::shardwise_binary(), "verify", "-i", f.in.string(), "-o", out.string(),
                   "--n-experts", "8", "-m", "4", "-q", "--page-cache", "drop"});
  CHECK(verified.exit_code == 0);
  CHECK(verified.err.empty());
}

// --page-cache drop on a file past the 64 MiB the drop lags behind the writer (84 MB at mp 1):
// mid-file, the writer waits for what it wrote 64 MiB earlier and drops it. A failure of that wait
// is the write's failure (exit 5, the temporary named, nothing under the final name, no temporary
// left, a rerun completes); failed advice there changes nothing.
TEST_CASE(
    "convert --page-cache drop: the mid-file wait past 64 MiB fails as the write, its advice may fail") {
  TempDir dir;
  const fs::path in = dir / "in";
  const fs::path reference = dir / "reference";
  const fs::path out = dir / "out";
  generate_checkpoint(in, {"--layers", "2", "--experts", "64"});
  const auto args = [&](const fs::path& to, const std::string& mode) {
    return Args{shardwise::test::shardwise_binary(),
                "convert",
                "-i",
                in.string(),
                "-o",
                to.string(),
                "--n-experts",
                "64",
                "-m",
                "1",
                "-q",
                "--threads",
                "1",
                "--page-cache",
                mode};
  };
  REQUIRE(run_command(args(reference, "keep")).exit_code == 0);
  const auto expected = folder_files(reference);
  const std::uint64_t file_size = expected.at("model0-mp1.safetensors").size();
  REQUIRE(file_size > (72u << 20));  // past the drop's lag and one write-back chunk, or nothing is tested

  // The first wait is mid-file: the file's first 8 MiB chunk, not the whole file before its commit.
  const auto failed = run_command(with_fault("sync_file_range_wait,EIO,1,.model0-mp1", args(out, "drop")));
  CHECK(failed.exit_code == 5);
  CHECK(failed.err == "shardwise: error: cannot write back 8388608 bytes at offset 0 of " +
                          (out / ".model0-mp1.safetensors.partial").string() + ": Input/output error\n");
  for (const auto& [name, bytes] : files_left(out)) {
    CAPTURE(name);
    CHECK(name.find(".partial") == std::string::npos);
    CHECK(name != "model0-mp1.safetensors");
  }
  // The rerun: every drop's advice fails (the mid-file ones first), and the output is the same.
  const auto rerun = run_command(with_fault("fadvise,EIO,1,.model0-mp1", args(out, "drop")));
  CHECK(rerun.exit_code == 0);
  CHECK(rerun.err.empty());
  CHECK(folder_files(out) == expected);
}

// The default path (no --page-cache) on files larger than one write-back chunk (8 MiB): written
// data is sent to disk chunk by chunk (sync_file_range), then the file is fsync'd before its
// rename. A failure of either is the write's failure: exit 5, the temporary named with the OS's
// words, nothing under the file's final name, no temporary left, and a rerun completes.
TEST_CASE(
    "convert: write-back and sync errors of files past 8 MiB on the default path exit 5, no final file") {
  TempDir dir;
  const fs::path in = dir / "in";
  generate_checkpoint(in, {"--layers", "2", "--experts", "8"});
  const auto args = [&](const fs::path& out, const std::string& mp) {
    return convert_args(in, out, kTwoThreads, mp);
  };
  struct Case {
    std::string mp;
    std::string fault;    // SHARDWISE_FAULT: OP,ERROR,N,PATH
    std::string file;     // the output file that fails
    std::string message;  // the error's first words
    std::string words;    // the OS's words
  };
  const std::vector<Case> cases = {
      {"2", "sync_file_range,EIO,1,.model0-mp2", "model0-mp2.safetensors", "cannot write back ",
       "Input/output error"},
      {"2", "sync_file_range,ENOSPC,1,.model1-mp2", "model1-mp2.safetensors", "cannot write back ",
       "No space left on device"},
      {"1", "sync_file_range,EIO,1,.model0-mp1", "model0-mp1.safetensors", "cannot write back ",
       "Input/output error"},
      {"2", "fsync,EIO,1,.model1-mp2", "model1-mp2.safetensors", "cannot sync ", "Input/output error"},
      {"1", "fsync,EIO,1,.model0-mp1", "model0-mp1.safetensors", "cannot sync ", "Input/output error"},
  };
  std::map<std::string, std::map<std::string, std::string>> expected;  // per mp
  for (const std::string mp : {"1", "2"}) {
    const fs::path reference = dir / ("reference-" + mp);
    REQUIRE(run_command(args(reference, mp)).exit_code == 0);
    expected[mp] = folder_files(reference);
    for (const auto& [name, bytes] : expected[mp]) {
      // Every rank file spans more than one write-back chunk, or the case tests nothing.
      if (name.starts_with("model")) REQUIRE(bytes.size() > (8u << 20));
    }
  }
  for (const Case& c : cases) {
    CAPTURE(c.fault);
    const fs::path out = dir / "out";
    fs::remove_all(out);
    const auto failed = run_command(with_fault(c.fault, args(out, c.mp)));
    CHECK(failed.exit_code == 5);
    CHECK_THAT(failed.err, Catch::StartsWith("shardwise: error: " + c.message));
    CHECK_THAT(failed.err, Catch::Contains("." + c.file + ".partial: " + c.words));
    const auto left = files_left(out);
    CHECK(left.count(c.file) == 0);
    for (const auto& [name, bytes] : left) {
      CAPTURE(name);
      CHECK(name.find(".partial") == std::string::npos);
      if (name == "shardwise-manifest.json") {
        CHECK_THAT(bytes, Catch::Contains("\"complete\":false"));
      } else {
        CHECK(bytes == expected[c.mp].at(name));
      }
    }
    const auto rerun = run_command(args(out, c.mp));
    CHECK(rerun.exit_code == 0);
    CHECK(folder_files(out) == expected[c.mp]);
  }
}

TEST_CASE("convert: short reads and writes are retried and write the same bytes") {
  Folders f;
  for (const std::string fault : {"pwrite,short,1,.model", "write,short,1,shardwise-manifest",
                                  "write,short,1,.tokenizer", "pread,short,1,/in/"}) {
    CAPTURE(fault);
    const fs::path out = f.dir / "out";
    fs::remove_all(out);
    const auto run = run_command(with_fault(fault, convert_args(f.in, out, kTwoThreads)));
    CHECK(run.exit_code == 0);
    CHECK(run.err.empty());
    CHECK(folder_files(out) == f.expected);
  }
}

}  // namespace
