#pragma once
// One writer per output file: a conversion holds a lock on what it writes in an output folder
// before it touches anything there. Internal to output.
//
// The lock is an open-file-description byte-range lock (fcntl F_OFD_SETLK) on the hidden file
// `.shardwise.lock` in the output folder: advisory, released by the kernel when the process ends
// however it ends (kill -9 leaves no stale lock), and carried over NFS as a byte-range lock. A
// whole run locks the whole file; a partial run (--ranks, --distributed) one 64-byte slot per rank
// it writes (slot rank + 1; side files go with rank 0), so runs writing disjoint ranks share the
// folder and runs writing a common rank exclude each other. Each holder writes "pid P on host H"
// into its slots (a whole run into slot 0), which is how a refused run names the holder.
//
// The last holder to leave removes the file: it takes the whole file before unlinking it, and a
// run that locked a file no longer at the path (unlinked meanwhile) opens the path again.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace shardwise::output {

inline constexpr const char* kLockFileName = ".shardwise.lock";

class FolderLock {
 public:
  // Locks `folder` (which must exist) for a whole run (`ranks` empty and `whole`) or for the
  // given ranks. Throws Error(io) at once when another run holds any of it, naming the holder's
  // pid and host where known and the conflicting rank; Error(io) naming the lock file when the
  // filesystem cannot lock.
  FolderLock(const std::string& folder, std::span<const std::uint64_t> ranks, bool whole);
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  // Releases the lock; removes the lock file when no other run holds any part of it.
  ~FolderLock();

  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::int64_t> slots_;  // offsets of the slots holding this run's record
};

}  // namespace shardwise::output
