// One writer per output file: which runs exclude each other (a table of whole and partial runs),
// what a refused run is told, and that the lock goes with its process, however that ends.
#include "output/folder_lock.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;
using output::FolderLock;

// A run's claim: every rank (nullopt) or these ranks.
using Claim = std::optional<std::vector<std::uint64_t>>;

std::unique_ptr<FolderLock> lock(const fs::path& folder, const Claim& claim) {
  static const std::vector<std::uint64_t> none;
  return std::make_unique<FolderLock>(folder.string(), claim ? *claim : none, !claim);
}

std::string this_host() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

// The message of the Error(io) a second run gets, or "" when it gets the lock.
std::string refusal(const fs::path& folder, const Claim& claim) {
  try {
    lock(folder, claim);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::io);
    return e.what();
  }
  return "";
}

TEST_CASE("folder lock: runs writing a common rank exclude each other, disjoint ranks share the folder") {
  struct Case {
    Claim held;
    Claim second;
    std::string holder;  // what the refusal says the holder writes; "" when the second run is let in
  };
  using V = std::vector<std::uint64_t>;
  const std::vector<Case> cases = {
      {std::nullopt, std::nullopt, "every rank"},
      {std::nullopt, V{3}, "every rank"},
      {V{1}, std::nullopt, "rank 1"},
      {V{0, 1}, V{1, 2}, "rank 1"},
      {V{0, 1}, V{2, 3}, ""},
      {V{5}, V{4, 6}, ""},
      {V{}, std::nullopt, ""},  // a process with no ranks writes only its own fragment
  };
  for (const Case& c : cases) {
    CAPTURE(c.held, c.second);
    TempDir dir;
    const auto first = lock(dir.path(), c.held);
    const std::string message = refusal(dir.path(), c.second);
    if (c.holder.empty()) {
      CHECK(message.empty());
    } else {
      CHECK(message ==
            fmt::format("the output folder {} is being written by another conversion (pid {} on host "
                        "{}, writing {}); a second run writing the same files would break both: wait "
                        "for it to end, or choose another folder (lock: {})",
                        dir.str(), ::getpid(), this_host(), c.holder, (dir / ".shardwise.lock").string()));
    }
  }
}

TEST_CASE("folder lock: released when its run ends, the last run to leave removes the lock file") {
  TempDir dir;
  const fs::path file = dir / ".shardwise.lock";
  auto first = lock(dir.path(), std::vector<std::uint64_t>{0});
  auto second = lock(dir.path(), std::vector<std::uint64_t>{1});
  CHECK(fs::exists(file));
  first.reset();
  CHECK(fs::exists(file));  // rank 1 is still held
  CHECK(!refusal(dir.path(), std::nullopt).empty());
  second.reset();
  CHECK(!fs::exists(file));
  { const auto whole = lock(dir.path(), std::nullopt); }
  CHECK(!fs::exists(file));
  CHECK(fs::is_empty(dir.path()));
}

TEST_CASE("folder lock: a run killed with SIGKILL leaves no lock behind") {
  TempDir dir;
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    FolderLock held(dir.str(), {}, true);
    (void)!::write(ready[1], "x", 1);
    for (;;) ::pause();
  }
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  CHECK_THAT(refusal(dir.path(), std::nullopt), Catch::Contains(fmt::format("(pid {} on host", child)));
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(refusal(dir.path(), std::nullopt).empty());
  ::close(ready[0]);
  ::close(ready[1]);
}

}  // namespace
}  // namespace shardwise::test
