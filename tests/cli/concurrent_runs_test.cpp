// Conversions that meet each other and a changing input: a second run into a folder being written
// is refused at once, naming the holder, while the first finishes and verifies; runs writing
// disjoint ranks share the folder; an input file rewritten under a run fails it (exit 4) with the
// manifest left incomplete. The first run is held at its first rank-file write by the fault shim
// ("gate") until the test lets it go, so the second meets it busy however loaded the machine is;
// a partial run held the same way where it completes the manifest finds its fragment folded into
// it by another run.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
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
using shardwise::test::joined;
using shardwise::test::run_command;
using shardwise::test::TempDir;
using shardwise::test::with_fault;

namespace {

const char* const kHeldWrites = "pwrite,gate,1,.model";

// Every run of these tests writes on one thread.
const Args kOneThread = {"--threads", "1"};

// True when `dir` holds the temporary of a rank file: a run is writing tensor data. The manifest's
// own temporary does not count: it appears and is renamed within moments at the start of a run.
bool writing_rank_file(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find(".partial") != std::string::npos && name.find(".model") != std::string::npos) return true;
  }
  return false;
}

// Waits (up to a minute) until a run is writing into `out`: its lock taken, a rank file's
// temporary there. The held writes keep that temporary in place until the gate opens.
void wait_until_writing(const fs::path& out) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool writing = false;
  while (!(writing = fs::exists(out / ".shardwise.lock") && writing_rank_file(out)) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(writing);
}

int wait_for(int pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The file the held run's writes wait on: it exists until open() (or the end of the test, so that
// a failed check never leaves a run waiting).
struct Gate {
  fs::path path;
  explicit Gate(fs::path file) : path(std::move(file)) { shardwise::test::write_file(path, "held"); }
  void open() {
    std::error_code ec;
    fs::remove(path, ec);
  }
  ~Gate() { open(); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
};

struct Folders {
  TempDir dir;
  fs::path in = dir / "in";
  fs::path out = dir / "out";
  std::map<std::string, std::string> expected;
  Gate gate{dir / "gate"};

  Folders() {
    generate_checkpoint(in, {"--layers", "2", "--experts", "8"});
    REQUIRE(run_command(convert_args(in, dir / "reference", kOneThread)).exit_code == 0);
    expected = folder_files(dir / "reference");
  }

  std::vector<std::string> held(const Args& args) const {
    return with_fault(kHeldWrites, convert_args(in, out, args), gate.path.string());
  }
};

TEST_CASE(
    "convert: a second run into a folder being written is refused naming the holder, the first finishes") {
  Folders f;
  const int first = shardwise::test::spawn_command(f.held(kOneThread));
  wait_until_writing(f.out);
  for (const std::vector<std::string>& extra : {std::vector<std::string>{}, {"--ranks", "2"}, {"--resume"}}) {
    CAPTURE(extra);
    const auto second = run_command(convert_args(f.in, f.out, joined(kOneThread, extra)));
    CHECK(second.exit_code == 5);
    CHECK_THAT(second.err, Catch::Contains("is being written by another conversion (pid " +
                                           std::to_string(first) + " on host "));
    CHECK_THAT(second.err, Catch::Contains("writing every rank"));
  }
  f.gate.open();
  CHECK(wait_for(first) == 0);
  CHECK(folder_files(f.out) == f.expected);  // the lock file is gone with its run
  const auto verified = run_command({shardwise::test::shardwise_binary(), "verify", "-i", f.in.string(), "-o",
                                     f.out.string(), "--n-experts", "8", "-m", "4", "-q"});
  CHECK(verified.exit_code == 0);
  CHECK(verified.err.empty());
}

TEST_CASE("convert: --ranks runs writing disjoint ranks share a folder, a common rank is refused") {
  Folders f;
  const Args first_ranks = joined(kOneThread, {"--ranks", "0,1"});
  const int first = shardwise::test::spawn_command(f.held(first_ranks));
  wait_until_writing(f.out);
  const auto overlapping = run_command(convert_args(f.in, f.out, joined(kOneThread, {"--ranks", "1-3"})));
  CHECK(overlapping.exit_code == 5);
  CHECK_THAT(overlapping.err, Catch::Contains("(pid " + std::to_string(first) + " on host "));
  CHECK_THAT(overlapping.err, Catch::Contains("writing rank 1)"));
  const auto disjoint = run_command(convert_args(f.in, f.out, joined(kOneThread, {"--ranks", "2,3"})));
  CHECK(disjoint.exit_code == 0);
  CHECK(disjoint.err.empty());
  f.gate.open();
  CHECK(wait_for(first) == 0);
  CHECK(folder_files(f.out) == f.expected);  // whichever finished last completed the manifest
}

TEST_CASE(
    "convert: a --ranks run whose fragment another run folded into the complete manifest ends with that "
    "manifest") {
  Folders f;
  // The run of ranks 2,3 is held after its last file, its fragment listing both, where it reads the
  // folder's manifest to complete it.
  const std::string held_read_back = "open-existing,gate,1,/shardwise-manifest.json";
  shardwise::test::CommandResult first;
  std::thread run([&] {
    first = run_command(with_fault(held_read_back,
                                   convert_args(f.in, f.out, joined(kOneThread, {"--ranks", "2,3"})),
                                   f.gate.path.string()));
  });
  const fs::path reached = f.gate.path.string() + ".reached";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(reached) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const bool held = fs::exists(reached);
  CHECK(held);
  if (held) {
    // Completes the manifest from the held run's fragment, then removes that fragment.
    const auto second = run_command(convert_args(f.in, f.out, joined(kOneThread, {"--ranks", "0,1"})));
    CHECK(second.exit_code == 0);
    CHECK(second.err.empty());
    CHECK(!fs::exists(f.out / "shardwise-manifest.ranks-2-3.json"));
  }
  f.gate.open();
  run.join();
  CAPTURE(first.err);
  CHECK(first.exit_code == 0);
  CHECK(first.err.empty());
  CHECK(folder_files(f.out) == f.expected);
}

TEST_CASE(
    "convert: an input file rewritten under a run fails it (exit 4) naming the file, a rerun completes") {
  Folders f;
  fs::path input;
  for (const auto& e : fs::directory_iterator(f.in)) {
    if (e.path().extension() == ".safetensors") input = e.path();
  }
  REQUIRE(!input.empty());
  shardwise::test::CommandResult first;
  std::thread run([&] { first = run_command(f.held(kOneThread)); });
  wait_until_writing(f.out);
  // Rewritten in place, same size: a download or sync writing over it.
  const int fd = ::open(input.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  const char edit[4] = {1, 2, 3, 4};
  CHECK(::pwrite(fd, edit, sizeof edit, static_cast<off_t>(fs::file_size(input) - sizeof edit)) == 4);
  ::close(fd);
  f.gate.open();
  run.join();
  CHECK(first.exit_code == 4);
  CHECK_THAT(first.err, Catch::Contains("input files changed while the conversion read them"));
  CHECK_THAT(first.err, Catch::Contains(input.string() + ": modified (mtime "));
  for (const auto& [name, bytes] : folder_files(f.out)) {
    CAPTURE(name);
    CHECK(name.find(".partial") == std::string::npos);
    if (name == "shardwise-manifest.json") CHECK_THAT(bytes, Catch::Contains("\"complete\":false"));
  }
  CHECK(run_command(convert_args(f.in, f.out, kOneThread)).exit_code == 0);
  const auto verified = run_command({shardwise::test::shardwise_binary(), "verify", "-i", f.in.string(), "-o",
                                     f.out.string(), "--n-experts", "8", "-m", "4", "-q"});
  CHECK(verified.exit_code == 0);
}

}  // namespace
