#include <shardwise/core/file_identity.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <ctime>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

namespace shardwise {

namespace {

std::int64_t nanoseconds(const struct timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + static_cast<std::int64_t>(t.tv_nsec);
}

FileIdentity identity_of(const struct stat& st) {
  return {static_cast<std::uint64_t>(st.st_size), nanoseconds(st.st_mtim), nanoseconds(st.st_ctim),
          static_cast<std::uint64_t>(st.st_ino)};
}

// "2026-12-01 14:03:07.123456789 UTC": the nanoseconds matter, a rewrite is often sub-second.
std::string format_time(std::int64_t ns) {
  if (ns < 0) return fmt::format("{} ns", ns);
  const std::time_t seconds = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm utc{};
  if (::gmtime_r(&seconds, &utc) == nullptr) return fmt::format("{} ns", ns);
  char text[32] = {};
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &utc);
  return fmt::format("{}.{:09} UTC", text, ns % 1'000'000'000);
}

}  // namespace

FileIdentity identity_of_open_file(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_os_error("cannot stat", path, errno);
  return identity_of(st);
}

std::optional<FileIdentity> identity_of_path(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return identity_of(st);
  if (errno == ENOENT) return std::nullopt;
  throw_os_error("cannot stat", path, errno);
}

std::vector<std::string> identity_changes(const FileIdentity& before, const FileIdentity& now) {
  std::vector<std::string> changes;
  if (before.inode != now.inode) {
    changes.push_back(fmt::format("replaced by another file (inode {} -> {})", before.inode, now.inode));
  }
  if (before.bytes != now.bytes)
    changes.push_back(fmt::format("size {} -> {} bytes", before.bytes, now.bytes));
  if (before.mtime_ns != now.mtime_ns) {
    changes.push_back(
        fmt::format("modified (mtime {} -> {})", format_time(before.mtime_ns), format_time(now.mtime_ns)));
  }
  if (before.ctime_ns != now.ctime_ns) {
    changes.push_back(fmt::format("status changed (ctime {} -> {})", format_time(before.ctime_ns),
                                  format_time(now.ctime_ns)));
  }
  return changes;
}

}  // namespace shardwise
