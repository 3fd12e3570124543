#include <shardwise/safetensors/file.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>
#include <shardwise/core/parallel.hpp>
#include "safetensors/header_fast.hpp"

namespace shardwise::st {

namespace {

// Reads exactly `size` bytes at `offset`, retrying short reads and EINTR. A file that ends early
// (it shrank after fstat) is an input error.
void read_exactly(int fd, void* buffer, std::size_t size, std::uint64_t offset, const std::string& path) {
  auto* out = static_cast<char*>(buffer);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_os_error("cannot read", path, errno);
    if (n == 0) {
      throw Error(ErrorKind::input,
                  fmt::format("{}: file ended at byte {} while reading its header (did it shrink?)", path,
                              offset + done));
    }
    done += static_cast<std::size_t>(n);
  }
}

// Reads the header's text (`size` bytes after the length prefix) into `text`: a large one in two
// halves on two threads, the copy out of the page cache and the first touch of the buffer's pages
// being most of the time of reading it. A problem in the first half is the one reported, as a
// read from the start would report it.
void read_text(int fd, char* text, std::size_t size, const std::string& path) {
  if (size < detail::kSplitFrom) {
    read_exactly(fd, text, size, 8, path);
    return;
  }
  const std::size_t half = size / 2;
  run_beside([&] { read_exactly(fd, text, half, 8, path); },
             [&] { read_exactly(fd, text + half, size - half, 8 + std::uint64_t{half}, path); });
}

// Opens without blocking (a FIFO must not hang the open) and refuses anything but a regular file.
int open_regular(const std::string& path, std::uint64_t& size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw_os_error("cannot open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw_os_error("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::input, fmt::format("{}: {}, not a safetensors file", path,
                                              S_ISDIR(st.st_mode) ? "is a folder" : "is not a regular file"));
  }
  size = static_cast<std::uint64_t>(st.st_size);
  return fd;
}

}  // namespace

File File::open(const std::string& path) {
  File file;
  file.path_ = path;
  file.fd_ = open_regular(path, file.size_);  // owned by `file` from here: closed on any throw
  if (file.size_ < 8) {
    throw Error(ErrorKind::input, fmt::format("{}: file is {} bytes, too short for the 8-byte header length",
                                              path, file.size_));
  }
  std::array<std::byte, 8> prefix{};
  read_exactly(file.fd_, prefix.data(), prefix.size(), 0, path);
  const std::uint64_t n = read_header_length(prefix, file.size_, path);
  const auto size = static_cast<std::size_t>(n);
  // Read once and parsed: not zeroed first; a large one (a Pro-sized checkpoint's is 24 MB) on huge
  // pages.
  const HugeBuffer text(allocate_array(size));
  read_text(file.fd_, text.get(), size, path);
  file.header_ = parse_header(std::string_view(text.get(), size), file.size_, path);
  file.mapped_ = new std::once_flag;
  return file;
}

File::File(File&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      size_(other.size_),
      header_(std::move(other.header_)),
      map_(std::exchange(other.map_, nullptr)),
      mapped_(std::exchange(other.mapped_, nullptr)) {}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    File old(std::move(*this));  // released when it goes out of scope
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    header_ = std::move(other.header_);
    map_ = std::exchange(other.map_, nullptr);
    mapped_ = std::exchange(other.mapped_, nullptr);
  }
  return *this;
}

File::~File() {
  if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), static_cast<std::size_t>(size_));
  if (fd_ >= 0) ::close(fd_);
  delete mapped_;
}

// Read-only and shared: the pages come from the page cache and are never copied into anonymous
// memory. (If another process truncates the file while it is mapped, reads past the new end raise
// SIGBUS; outputs are written to temporary names and renamed, never truncated in place.)
void File::map() const {
  void* p = ::mmap(nullptr, static_cast<std::size_t>(size_), PROT_READ, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) throw_os_error("cannot map", path_, errno);
  map_ = static_cast<const std::byte*>(p);
}

std::span<const std::byte> File::data(const TensorInfo& t) const {
  if (mapped_ == nullptr) throw Error(ErrorKind::io, fmt::format("{}: file was moved from", path_));
  std::call_once(*mapped_, [this] { map(); });
  return {map_ + absolute_offset(t), static_cast<std::size_t>(t.bytes())};
}

}  // namespace shardwise::st
