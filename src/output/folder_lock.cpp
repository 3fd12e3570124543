#include "output/folder_lock.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

#include <shardwise/core/io.hpp>

namespace shardwise::output {

namespace {

// Each slot holds one holder's "pid P on host H", NUL-padded.
constexpr off_t kSlotBytes = 128;
// A conflict may be the last run leaving, between taking the whole file and removing it: the
// lock is tried again this many times, this far apart, before the run is refused.
constexpr int kAttempts = 5;
constexpr auto kRetryDelay = std::chrono::milliseconds(20);

struct Range {
  off_t start = 0;
  off_t length = 0;  // 0: to the end of the file, however long
};

std::vector<Range> ranges_of(std::span<const std::uint64_t> ranks, bool whole) {
  if (whole) return {Range{0, 0}};
  std::vector<Range> ranges;
  for (const std::uint64_t rank : ranks)
    ranges.push_back({static_cast<off_t>(rank + 1) * kSlotBytes, kSlotBytes});
  return ranges;
}

struct flock lock_request(short type, const Range& range) {
  struct flock request {};
  request.l_type = type;
  request.l_whence = SEEK_SET;
  request.l_start = range.start;
  request.l_len = range.length;
  return request;
}

// True when the lock was taken, false when another open file holds a conflicting one.
bool try_lock(int fd, const Range& range, const std::string& path) {
  struct flock request = lock_request(F_WRLCK, range);
  if (::fcntl(fd, F_OFD_SETLK, &request) == 0) return true;
  const int error = errno;
  if (error == EAGAIN || error == EACCES) return false;
  throw Error(ErrorKind::io, fmt::format("cannot lock {}: {} (the output folder's filesystem must support "
                                         "fcntl locks, so that two conversions cannot write the same files)",
                                         path, std::strerror(error)));
}

// The path itself, not what a link there leads to: a link put in the lock file's place is not it.
bool same_file(int fd, const std::string& path) {
  struct stat opened {};
  struct stat named {};
  return ::fstat(fd, &opened) == 0 && ::lstat(path.c_str(), &named) == 0 && opened.st_dev == named.st_dev &&
         opened.st_ino == named.st_ino;
}

// Who holds a lock conflicting with `range`, as its slot says: "pid P on host H, writing ...".
// Only a whole run locks slot 0. A partial holder's adjacent slots merge into one lock, so the
// rank named is the one asked for (the holder wrote its record there too), or for a whole run
// asking, the first the holder holds.
std::string describe_holder(int fd, const Range& range) {
  struct flock probe = lock_request(F_WRLCK, range);
  if (::fcntl(fd, F_OFD_GETLK, &probe) != 0 || probe.l_type == F_UNLCK) return "a run that has just ended";
  const off_t slot = probe.l_start == 0 ? 0 : (range.length != 0 ? range.start : probe.l_start) / kSlotBytes;
  char record[kSlotBytes + 1] = {};
  const ssize_t n = ::pread(fd, record, kSlotBytes, slot * kSlotBytes);
  const std::string who = n > 0 && record[0] != '\0' ? std::string(record) : "pid and host not known";
  const std::string what = slot == 0 ? "every rank" : fmt::format("rank {}", slot - 1);
  return fmt::format("{}, writing {}", who, what);
}

std::string own_record() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown");
  std::string record = fmt::format("pid {} on host {}", ::getpid(), host);
  record.resize(static_cast<std::size_t>(kSlotBytes), '\0');  // a slot, NUL-padded (a long host name cut)
  return record;
}

}  // namespace

FolderLock::FolderLock(const std::string& folder, std::span<const std::uint64_t> ranks, bool whole)
    : path_((std::filesystem::path(folder) / kLockFileName).string()) {
  const std::vector<Range> ranges = ranges_of(ranks, whole);
  for (int attempt = 1;; ++attempt) {
    // Not through a link: a link planted under its name would have the run write (and a refused
    // run clear) someone else's file.
    const int fd = io::open_in_output_folder(path_, O_RDWR | O_CREAT, 0644, "the lock file");
    std::optional<Range> conflict;
    try {
      for (const Range& range : ranges) {
        if (!try_lock(fd, range, path_)) {
          conflict = range;
          break;
        }
      }
    } catch (...) {
      ::close(fd);
      throw;
    }
    if (!conflict && same_file(fd, path_)) {
      fd_ = fd;
      break;
    }
    // Either locked a file the last holder has unlinked meanwhile (open the path again), or refused.
    const std::string holder = conflict ? describe_holder(fd, *conflict) : "";
    ::close(fd);
    if (!conflict && attempt == kAttempts) {
      throw Error(ErrorKind::io,
                  fmt::format("cannot lock {}: it was replaced or removed {} times while being locked", path_,
                              kAttempts));
    }
    if (!conflict) continue;
    if (attempt == kAttempts) {
      throw Error(ErrorKind::io,
                  fmt::format("the output folder {} is being written by another conversion ({}); a second "
                              "run writing the same files would break both: wait for it to end, or choose "
                              "another folder (lock: {})",
                              folder, holder, path_));
    }
    std::this_thread::sleep_for(kRetryDelay);
  }
  // The record only names the holder to a refused run: a full disk must not fail the run here,
  // before it can say which of its files does not fit.
  const std::string record = own_record();
  for (const Range& range : ranges) {
    if (::pwrite(fd_, record.data(), record.size(), range.start) != kSlotBytes) break;
  }
  for (const Range& range : ranges) slots_.push_back(range.start);
}

FolderLock::~FolderLock() {
  if (fd_ < 0) return;
  // Cleared so that no record outlives its run (a failure only leaves a stale name behind).
  const std::string none(static_cast<std::size_t>(kSlotBytes), '\0');
  for (const std::int64_t slot : slots_) {
    if (::pwrite(fd_, none.data(), none.size(), static_cast<off_t>(slot)) < 0) break;
  }
  // Released before taking the whole file: of two runs leaving at once, the later one to try then
  // finds the file free. Taking it succeeds only when no other run holds any part: nobody needs it.
  struct flock release = lock_request(F_UNLCK, Range{0, 0});
  struct flock everything = lock_request(F_WRLCK, Range{0, 0});
  if (::fcntl(fd_, F_OFD_SETLK, &release) == 0 && ::fcntl(fd_, F_OFD_SETLK, &everything) == 0 &&
      same_file(fd_, path_)) {
    ::unlink(path_.c_str());
  }
  ::close(fd_);
}

}  // namespace shardwise::output
