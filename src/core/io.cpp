#include <shardwise/core/io.hpp>

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
      throw Error(ErrorKind::input,
                  fmt::format("cannot read {}: the file ends before byte {} (did it change while "
                              "being read?)",
                              path, offset + out.size()));
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
  if (length != 0)
    ::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_WILLNEED);
}

void drop_cached(int fd, std::uint64_t offset, std::uint64_t length) {
  if (length != 0)
    ::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_DONTNEED);
}

bool exceeds_page_cache(std::uint64_t bytes) {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return false;
  return bytes / static_cast<std::uint64_t>(page_size) > static_cast<std::uint64_t>(pages) / 2;
}

int open_regular_file(const std::string& path, ErrorKind kind, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int error = errno;
    throw_os_error(what.empty() ? std::string("cannot open") : fmt::format("cannot open {}", what), path,
                   error);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    throw_os_error("cannot stat", path, error);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(kind, fmt::format("{}: {}, not a regular file: refused without reading it", path,
                                  S_ISDIR(st.st_mode)    ? "a folder"
                                  : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                                  : S_ISSOCK(st.st_mode) ? "a socket"
                                                         : "a device"));
  }
  return fd;
}

int open_in_output_folder(const std::string& path, int flags, unsigned mode, std::string_view what) {
  const int fd = ::open(path.c_str(), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, static_cast<mode_t>(mode));
  const int error = fd < 0 ? errno : 0;
  if (error == ELOOP) {
    throw Error(ErrorKind::io,
                fmt::format("{} {} is a symbolic link: shardwise writes no file through a link (it "
                            "could lead outside the output folder); remove it",
                            what, path));
  }
  const auto not_regular = [&] {
    return Error(ErrorKind::io, fmt::format("{} {} is not a regular file: remove it", what, path));
  };
  if (error == ENXIO) throw not_regular();  // a FIFO no one reads
  if (fd < 0) throw_os_error((flags & O_CREAT) != 0 ? "cannot create" : "cannot open", path, error);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw not_regular();
  }
  return fd;
}

std::string read_regular_file(const std::string& path, std::uint64_t max_bytes, ErrorKind kind,
                              std::string_view what) {
  const ReadOnlyFile file(path, kind, what);
  const std::uint64_t size = file.size();
  if (size > max_bytes)
    throw Error(kind, fmt::format("{}: {} is larger than {} bytes", path, what, max_bytes));
  std::string text(static_cast<std::size_t>(size), '\0');
  pread_exact(file.fd(), path, 0, std::as_writable_bytes(std::span(text)));
  return text;
}

ReadOnlyFile::ReadOnlyFile(const std::string& path, ErrorKind kind, std::string_view what) : path_(path) {
  fd_ = open_regular_file(path, kind, what);
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

unsigned ReadOnlyFile::mode() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw_os_error("cannot stat", path_, errno);
  return static_cast<unsigned>(st.st_mode) & 0777u;
}

}  // namespace shardwise::io
