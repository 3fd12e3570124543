// What counts as a changed input file: identity_changes on chosen values (every phrase, exactly),
// and identities of real files before and after the changes a download or a sync makes.
#include <shardwise/core/file_identity.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

// 2026-12-01 14:03:07.000000001 UTC and one second later.
constexpr std::int64_t kT0 = 1'796'133'787'000'000'001;
constexpr std::int64_t kT1 = kT0 + 1'000'000'000;

TEST_CASE("identity_changes names every difference with its numbers") {
  const FileIdentity base{1024, kT0, kT0, 12};
  struct Case {
    FileIdentity now;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {base, {}},
      {{2048, kT0, kT0, 12}, {"size 1024 -> 2048 bytes"}},
      {{1024, kT1, kT1, 12},
       {"modified (mtime 2026-12-01 14:03:07.000000001 UTC -> 2026-12-01 14:03:08.000000001 UTC)",
        "status changed (ctime 2026-12-01 14:03:07.000000001 UTC -> 2026-12-01 14:03:08.000000001 UTC)"}},
      // touch -d with the old time: only ctime shows it.
      {{1024, kT0, kT1, 12},
       {"status changed (ctime 2026-12-01 14:03:07.000000001 UTC -> 2026-12-01 14:03:08.000000001 UTC)"}},
      {{1024, kT0, kT0, 34}, {"replaced by another file (inode 12 -> 34)"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.expected);
    CHECK(identity_changes(base, c.now) == c.expected);
  }
}

void set_mtime(const fs::path& path, std::int64_t seconds) {
  const struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

TEST_CASE("a file's identity changes when it is rewritten in place, grown, replaced or removed") {
  TempDir dir;
  const fs::path file = dir / "model.safetensors";
  write_file(file, "0123456789abcdef");
  // Back-dated, so that a rewrite within the filesystem's timestamp granularity still shows.
  set_mtime(file, 1'600'000'000);
  const FileIdentity before = *identity_of_path(file.string());
  CHECK(before.bytes == 16);
  CHECK(before.mtime_ns == 1'600'000'000'000'000'000);
  CHECK(identity_of_path(file.string()) == before);

  const int fd = ::open(file.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  CHECK(identity_of_open_file(fd, file.string()) == before);

  SECTION("rewritten in place, same size") {
    const int w = ::open(file.c_str(), O_WRONLY);
    REQUIRE(::pwrite(w, "XY", 2, 4) == 2);
    ::close(w);
    const FileIdentity now = *identity_of_path(file.string());
    CHECK(now.bytes == before.bytes);
    CHECK(now.mtime_ns != before.mtime_ns);
  }
  SECTION("grown") {
    write_file(file, "0123456789abcdef++");
    CHECK(identity_of_path(file.string())->bytes == 18);
  }
  SECTION("replaced by a file renamed over it") {
    write_file(dir / "new", "0123456789abcdef");
    set_mtime(dir / "new", 1'600'000'000);
    fs::rename(dir / "new", file);
    CHECK(identity_of_path(file.string())->inode != before.inode);
    // The descriptor still sees the file as opened (its ctime moves: it lost its name).
    CHECK(identity_of_open_file(fd, file.string()).inode == before.inode);
  }
  SECTION("removed") {
    fs::remove(file);
    CHECK(!identity_of_path(file.string()));
  }
  ::close(fd);
}

}  // namespace
}  // namespace shardwise::test
