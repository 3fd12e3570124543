#pragma once
// Whole-range positional I/O on file descriptors: retries short transfers and EINTR, and turns OS
// errors into Error(io) naming the path. Every step that moves tensor data uses these rather than
// mmap: mapped pages count in the process's RSS, which must stay bounded.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace shardwise::io {

// Reads exactly `out.size()` bytes at `offset`; a file that ends early is an Error(io).
void pread_exact(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out);
// Writes all of `data` at `offset`.
void pwrite_all(int fd, const std::string& path, std::uint64_t offset, std::span<const std::byte> data);

// An open read-only descriptor, closed on destruction.
class ReadOnlyFile {
 public:
  explicit ReadOnlyFile(const std::string& path);
  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile& operator=(ReadOnlyFile&&) = delete;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
  ~ReadOnlyFile();
  int fd() const noexcept { return fd_; }
  const std::string& path() const noexcept { return path_; }
  std::uint64_t size() const;

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace shardwise::io
