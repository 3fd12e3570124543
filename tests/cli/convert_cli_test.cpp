// `shardwise convert` as users run it: the real binary on generated checkpoints. Whether the bytes
// are right is tested against independent expectations in tests/convert; here: the same output
// whatever the threads, --dry-run, refusals with their exit codes, interruption and rerun.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::folder_files;
using shardwise::test::generate_checkpoint;
using shardwise::test::has_temporary;
using shardwise::test::read_file;
using shardwise::test::run_command;
using shardwise::test::TempDir;

namespace {

shardwise::test::CommandResult convert(const fs::path& in, const fs::path& out,
                                       std::vector<std::string> extra, const std::string& experts = "8") {
  std::vector<std::string> args = {shardwise::test::shardwise_binary(),
                                   "convert",
                                   "--hf-ckpt-path",
                                   in.string(),
                                   "--save-path",
                                   out.string(),
                                   "--n-experts",
                                   experts,
                                   "--model-parallel",
                                   "4"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_command(args);
}

TEST_CASE("convert: the same files whatever the thread count, a summary unless --quiet") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--files", "3", "--special-scales"});
  const auto one = convert(dir / "in", dir / "t1", {"--threads", "1"});
  REQUIRE(one.exit_code == 0);
  CHECK(one.err.find("wrote 4 files (") != std::string::npos);
  CHECK(one.err.find("and 2 side files: ") != std::string::npos);
  const auto three = convert(dir / "in", dir / "t3", {"-t", "3", "-q"});
  REQUIRE(three.exit_code == 0);
  CHECK(three.err.empty());
  const auto a = folder_files(dir / "t1");
  CHECK(a.size() == 4 + 2 + 1);
  CHECK(a.count("shardwise-manifest.json") == 1);
  CHECK(a == folder_files(dir / "t3"));
}

TEST_CASE("convert --dry-run prints the plan as `plan` does and writes nothing") {
  TempDir dir;
  generate_checkpoint(dir / "in");
  for (const std::string format : {"text", "json"}) {
    const auto dry = convert(dir / "in", dir / "out", {"--dry-run", "--format", format});
    REQUIRE(dry.exit_code == 0);
    const auto plan = run_command({shardwise::test::shardwise_binary(), "plan", "-i", (dir / "in").string(),
                                   "--n-experts", "8", "-m", "4", "--format", format});
    REQUIRE(plan.exit_code == 0);
    CHECK(dry.out == plan.out);
    CHECK(!fs::exists(dir / "out"));
  }
}

TEST_CASE("convert refuses unsafe output folders with exit code 5, and --force overwrites foreign files") {
  TempDir dir;
  generate_checkpoint(dir / "in");
  const std::string in = fs::canonical(dir / "in").string();
  struct Refusal {
    fs::path out;
    std::string message;
  };
  fs::create_directories(dir / "foreign");
  shardwise::test::write_file(dir / "foreign" / "model2-mp4.safetensors", "someone else's");
  const std::vector<Refusal> refusals = {
      {dir / "in", "shardwise: error: the output folder " + (dir / "in").string() +
                       " is the input folder: choose another one\n"},
      {dir / "in" / "shards", "shardwise: error: the output folder " + (dir / "in" / "shards").string() +
                                  " is inside the input folder " + in + ": choose one outside it\n"},
      {dir / "foreign",
       "shardwise: error: the output folder " + fs::canonical(dir / "foreign").string() +
           " holds 1 file that shardwise did not write and would overwrite: model2-mp4.safetensors "
           "(no shardwise manifest there lists it); pass --force to overwrite\n"},
  };
  for (const Refusal& r : refusals) {
    const auto result = convert(dir / "in", r.out, {"-q"});
    CHECK(result.exit_code == 5);
    CHECK(result.err == r.message);
  }
  CHECK(read_file(dir / "foreign" / "model2-mp4.safetensors") == "someone else's");
  CHECK(convert(dir / "in", dir / "foreign", {"-q", "--force"}).exit_code == 0);
  CHECK(read_file(dir / "foreign" / "model2-mp4.safetensors").size() > 1000);
}

// Runs convert on `in` into `out` and sends `signal` once a temporary appears; returns the wait status.
int interrupt_convert(const fs::path& in, const fs::path& out, int signal) {
  const pid_t pid =
      shardwise::test::spawn_command({shardwise::test::shardwise_binary(), "convert", "-i", in.string(), "-o",
                                      out.string(), "--n-experts", "64", "-m", "4", "--threads", "1"});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (!has_temporary(out) && std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;  // finished before we could interrupt
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ::kill(pid, signal);
  while (::waitpid(pid, &status, 0) < 0) {
  }
  return status;
}

TEST_CASE("convert refused by the system mid-write (file size limit) exits 5, leaves nothing half-written") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--layers", "2", "--experts", "8"});
  REQUIRE(convert(dir / "in", dir / "reference", {"-q"}).exit_code == 0);
  const fs::path out = dir / "out";
  // A limit of 64 blocks (32 or 64 KiB, as the shell counts them) is below any rank file; SIGXFSZ
  // is ignored so that the write fails with EFBIG instead of killing the process.
  const std::string command = "ulimit -f 64; trap '' XFSZ; exec '" + shardwise::test::shardwise_binary() +
                              "' convert -i '" + (dir / "in").string() + "' -o '" + out.string() +
                              "' --n-experts 8 -m 4 -q";
  const auto limited = run_command({"/bin/sh", "-c", command});
  CHECK(limited.exit_code == 5);
  CHECK_THAT(limited.err, Catch::Contains("File too large"));
  for (const auto& [name, bytes] : folder_files(out)) {
    CAPTURE(name);
    CHECK(name == "shardwise-manifest.json");  // no rank file, finished or partial, and no temporary
  }
  CHECK(convert(dir / "in", out, {"-q"}).exit_code == 0);
  CHECK(folder_files(out) == folder_files(dir / "reference"));
}

TEST_CASE(
    "convert interrupted by SIGTERM or SIGKILL leaves only complete files, and a rerun finishes the job") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--layers", "6", "--experts", "64"});
  const auto full = convert(dir / "in", dir / "reference", {"-q"}, "64");
  REQUIRE(full.exit_code == 0);
  const auto expected = folder_files(dir / "reference");
  for (const int signal : {SIGTERM, SIGKILL}) {
    CAPTURE(signal);
    const fs::path out = dir / ("out-" + std::to_string(signal));
    const int status = interrupt_convert(dir / "in", out, signal);
    if (WIFSIGNALED(status)) {
      CHECK(WTERMSIG(status) == signal);
      // SIGTERM removes its temporaries; SIGKILL cannot, the rerun does.
      if (signal == SIGTERM) CHECK(!has_temporary(out));
    } else {
      WARN("convert finished before it could be interrupted");
    }
    for (const auto& [name, bytes] : folder_files(out)) {
      // A killed run leaves its temporaries and its (released) lock file; the rerun clears both.
      if (name.find(".partial") != std::string::npos || name == "shardwise-manifest.json" ||
          name == ".shardwise.lock") {
        continue;
      }
      CAPTURE(name);
      CHECK(bytes == expected.at(name));  // any final-named file is complete
    }
    const auto rerun = convert(dir / "in", out, {"-q"}, "64");  // no --force needed: the files are its own
    CHECK(rerun.exit_code == 0);
    CHECK(rerun.err.empty());
    CHECK(folder_files(out) == expected);
  }
}

}  // namespace
