#pragma once
// Whole-range positional I/O on file descriptors: retries short transfers and EINTR, and turns OS
// errors into Error(io) naming the path. Every step that moves tensor data uses these rather than
// mmap: mapped pages count in the process's RSS, which must stay bounded.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <shardwise/core/error.hpp>

namespace shardwise::io {

// Opens `path` read-only without blocking (a FIFO with no writer would hang an ordinary open) and
// refuses anything but a regular file before a byte is read: Error(kind) naming it. Error(io) when
// the OS refuses ("cannot open WHAT PATH: ..."). Returns the descriptor, the caller's to close.
int open_regular_file(const std::string& path, ErrorKind kind, std::string_view what = {});
// The whole of the regular file at `path` (open_regular_file), refused with Error(kind) when it
// holds more than `max_bytes`: "PATH: WHAT is larger than MAX bytes" (WHAT: "rules file", ...).
std::string read_regular_file(const std::string& path, std::uint64_t max_bytes, ErrorKind kind,
                              std::string_view what);

// Reads exactly `out.size()` bytes at `offset`; a file that ends early is an Error(input) (its
// content is not what was planned: truncated, or changing), a failing read an Error(io).
void pread_exact(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out);
// Writes all of `data` at `offset`.
void pwrite_all(int fd, const std::string& path, std::uint64_t offset, std::span<const std::byte> data);

// Page-cache advice on a file being read. Advice changes no byte read, so it never fails: errors
// are ignored.
// The run reads the file mostly front to back: the kernel may read further ahead.
void advise_sequential(int fd);
// The run will read [offset, offset + length) soon: the kernel may start reading it now, while
// the run works on what it read before.
void will_need(int fd, std::uint64_t offset, std::uint64_t length);
// The run will not read [offset, offset + length) again: its pages may leave the cache now
// rather than crowd out pages still needed (pages partly outside the range stay).
void drop_cached(int fd, std::uint64_t offset, std::uint64_t length);

// Whether a run that reads and writes `bytes` in all moves more than half of physical memory: its
// pages cannot all stay cached, so keeping them only costs reclaim and writeback stalls.
bool exceeds_page_cache(std::uint64_t bytes);

// Opens (and with O_CREAT in `flags`, creates) `path` in an output folder without following a link
// in its last component and without blocking, and refuses anything but a regular file: a link or a
// FIFO planted under a name the run writes would send its bytes elsewhere, or hang it. Error(io)
// naming `path` (`what`: "the lock file", "a temporary file") and what is there instead.
int open_in_output_folder(const std::string& path, int flags, unsigned mode, std::string_view what);

// An open read-only descriptor on a regular file (open_regular_file: anything else is an
// Error(input)), closed on destruction.
class ReadOnlyFile {
 public:
  explicit ReadOnlyFile(const std::string& path, ErrorKind kind = ErrorKind::input,
                        std::string_view what = {});
  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile& operator=(ReadOnlyFile&&) = delete;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
  ~ReadOnlyFile();
  int fd() const noexcept { return fd_; }
  const std::string& path() const noexcept { return path_; }
  std::uint64_t size() const;
  // The permission bits (0777) of the file.
  unsigned mode() const;

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace shardwise::io
