#include "core/io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

namespace shardwise::io {

void pread_exact(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_os_error("cannot read", path, errno);
    }
    if (n == 0) {
      // Shorter than its header or its plan says: the file's content is wrong (a truncated or
      // changing input), not the system's reading of it.
      throw Error(ErrorKind::input, fmt::format("cannot read {}: the file ends before byte {} (did it change while "
                                             "being read?)", path, offset + out.size()));
    }
    done += static_cast<std::size_t>(n);
  }
}

void pwrite_all(int fd, const std::string& path, std::uint64_t offset, std::span<const std::byte> data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_os_error("cannot write", path, errno);
    }
    done += static_cast<std::size_t>(n);
  }
}

void advise_sequential(int fd) { ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); }

void will_need(int fd, std::uint64_t offset, std::uint64_t length) {
  if (length != 0) ::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_WILLNEED);
}

void drop_cached(int fd, std::uint64_t offset, std::uint64_t length) {
  if (length != 0) ::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_DONTNEED);
}

bool exceeds_page_cache(std::uint64_t bytes) {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return false;
  return bytes / static_cast<std::uint64_t>(page_size) > static_cast<std::uint64_t>(pages) / 2;
}

ReadOnlyFile::ReadOnlyFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw_os_error("cannot open", path, errno);
}

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

ReadOnlyFile::~ReadOnlyFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::uint64_t ReadOnlyFile::size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw_os_error("cannot stat", path_, errno);
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace shardwise::io
