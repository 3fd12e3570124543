#include "plan/text_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

namespace shardwise::plan::detail {

namespace {

// A TextStore's blocks double from the first to the last size: a small plan takes little.
constexpr std::size_t kFirstBlock = std::size_t{64} << 10;
constexpr std::size_t kLastBlock = std::size_t{16} << 20;

Error too_large(const std::string& path, std::size_t max_bytes) {
  return Error(
      ErrorKind::input,
      fmt::format("{}: not a shardwise plan: more than {} bytes (a plan of 240,032 tensors is 86 MB)", path,
                  max_bytes));
}

}  // namespace

std::string_view TextStore::add(std::string_view text) {
  if (text.size() > left_) {
    block_ = std::clamp(2 * block_, kFirstBlock, kLastBlock);
    const std::size_t size = std::max(block_, text.size());
    blocks_.push_back(HugeBuffer(allocate_array(size)));
    next_ = blocks_.back().get();
    left_ = size;
    last_size_ = size;
  }
  if (!text.empty()) std::memcpy(next_, text.data(), text.size());
  const std::string_view stored(next_, text.size());
  next_ += text.size();
  left_ -= text.size();
  return stored;
}

void TextStore::clear() noexcept {
  if (blocks_.empty()) return;
  if (blocks_.size() > 1) blocks_.erase(blocks_.begin(), blocks_.end() - 1);
  next_ = blocks_.back().get();
  left_ = last_size_;
}

void FileText::read(const std::string& path, std::size_t max_bytes) {
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode))
    throw_os_error("cannot read the plan", path, EISDIR);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_os_error("cannot read the plan", path, errno);
  size_ = 0;
  if (::fstat(fd, &info) == 0 && static_cast<std::uint64_t>(info.st_size) > max_bytes) {
    ::close(fd);
    throw too_large(path, max_bytes);
  }
  if (info.st_size > 0 && static_cast<std::size_t>(info.st_size) >= capacity_) {
    data_.reset();  // never two full-size buffers at once
    capacity_ = static_cast<std::size_t>(info.st_size) + 1;
    data_ = HugeBuffer(allocate_array(capacity_));
  }
  // Grows when the file is not a regular one (a pipe: `diff <(plan ...) <(plan ...)`) or grew
  // meanwhile, up to max_bytes: /dev/zero or an endless pipe is refused, not read until memory
  // runs out.
  for (;;) {
    if (size_ >= max_bytes) {
      char probe = 0;  // exactly max_bytes is a plan; one byte more is not
      ssize_t more = 0;
      do more = ::read(fd, &probe, 1);
      while (more < 0 && errno == EINTR);
      if (more == 0) break;
      const int error = errno;
      ::close(fd);
      if (more < 0) throw_os_error("cannot read the plan", path, error);
      throw too_large(path, max_bytes);
    }
    if (size_ == capacity_) {
      const std::size_t bigger = std::min(std::max<std::size_t>(capacity_ * 2, 1 << 16), max_bytes);
      HugeBuffer grown(allocate_array(bigger));
      if (size_ > 0) std::memcpy(grown.get(), data_.get(), size_);
      data_ = std::move(grown);
      capacity_ = bigger;
    }
    const ssize_t got = ::read(fd, data_.get() + size_, std::min(capacity_, max_bytes) - size_);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int error = errno;
      ::close(fd);
      throw_os_error("cannot read the plan", path, error);
    }
    if (got == 0) break;
    size_ += static_cast<std::size_t>(got);
  }
  ::close(fd);
}

FileWindow::FileWindow(const std::string& path, std::size_t capacity, std::size_t ahead,
                       std::size_t max_bytes)
    : path_(path),
      buffer_(allocate_array(capacity)),
      capacity_(capacity),
      ahead_(ahead),
      max_bytes_(max_bytes) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw_os_error("cannot read the plan", path, errno);
  struct stat info {};
  if (::fstat(fd_, &info) == 0 && static_cast<std::uint64_t>(info.st_size) > max_bytes) {
    ::close(fd_);
    throw too_large(path, max_bytes);
  }
  try {
    fill();
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

FileWindow::~FileWindow() { ::close(fd_); }

void FileWindow::slide(std::size_t from) {
  from = std::min(from, size_);
  if (from > 0 && from < size_) std::memmove(buffer_.get(), buffer_.get() + from, size_ - from);
  size_ -= from;
  fill();
}

void FileWindow::fill() {
  while (!at_end_ && size_ < capacity_) {
    const ssize_t got = ::read(fd_, buffer_.get() + size_, capacity_ - size_);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw_os_error("cannot read the plan", path_, errno);
    if (got == 0) {
      at_end_ = true;
      break;
    }
    size_ += static_cast<std::size_t>(got);
    total_ += static_cast<std::size_t>(got);
    if (total_ > max_bytes_) throw too_large(path_, max_bytes_);  // the file grew meanwhile
  }
}

}  // namespace shardwise::plan::detail
