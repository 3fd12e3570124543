#pragma once
// What an input file looked like when a run started reading it, so that the run can tell, before
// it vouches for its output, whether the file changed under it (a download still in progress, a
// re-sync, a file replaced by another).
//
// Compared: size, modification and status-change times (nanoseconds) and inode number. A rewrite
// in place changes mtime and ctime; a file renamed over the path changes the inode; resetting
// mtime with `touch -d` still changes ctime. Not caught: a rewrite that keeps the size and falls
// within the filesystem's timestamp granularity of the recorded times (a few ms on ext4/xfs,
// 2 s on FAT), and changes an NFS client's attribute cache does not yet show.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shardwise {

struct FileIdentity {
  std::uint64_t bytes = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  std::uint64_t inode = 0;

  friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

// Of an open descriptor (the file as opened, even if the path now names another). Throws
// Error(io) naming `path`.
FileIdentity identity_of_open_file(int fd, const std::string& path);
// Of whatever `path` names now; nullopt when nothing does. Throws Error(io) for other failures.
std::optional<FileIdentity> identity_of_path(const std::string& path);

// What differs, one phrase each: "size 1024 -> 2048 bytes", "modified (mtime 2026-12-01
// 14:03:07.123456789 -> ...)", "status changed (ctime ...)", "replaced by another file (inode 12
// -> 34)". Empty when nothing does.
std::vector<std::string> identity_changes(const FileIdentity& before, const FileIdentity& now);

}  // namespace shardwise
