#include "verify/scan.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <numeric>
#include <utility>

#include <fmt/format.h>

#include <shardwise/convert/checksum.hpp>
#include <shardwise/core/error.hpp>

namespace shardwise::verify {

ReadOnlyFd::ReadOnlyFd(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw_os_error("cannot open", path, errno);
}

ReadOnlyFd::ReadOnlyFd(ReadOnlyFd&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

ReadOnlyFd::~ReadOnlyFd() {
  if (fd_ >= 0) ::close(fd_);
}

std::uint64_t ReadOnlyFd::size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw_os_error("cannot stat", path_, errno);
  return static_cast<std::uint64_t>(st.st_size);
}

namespace {

// Feeds the part of `chunk` (which starts at absolute offset `at`) that falls in each tensor to
// that tensor's digest, finishing the tensors that end within it. `next` walks `order` (tensors
// by data offset), which tile the data buffer without gaps.
struct TensorCursor {
  const st::File& file;
  std::vector<std::size_t> order;
  std::size_t next = 0;
  convert::Hasher hasher;

  void feed(std::uint64_t at, std::span<const std::byte> chunk, std::vector<std::uint64_t>& digests) {
    const std::uint64_t chunk_end = at + chunk.size();
    while (next < order.size()) {
      const st::TensorInfo& t = file.header().tensors[order[next]];
      const std::uint64_t begin = file.absolute_offset(t);
      const std::uint64_t end = begin + t.bytes();
      if (begin >= chunk_end && end > begin) return;
      const std::uint64_t lo = std::max(begin, at);
      const std::uint64_t hi = std::min(end, chunk_end);
      if (hi > lo) hasher.update(chunk.subspan(static_cast<std::size_t>(lo - at), static_cast<std::size_t>(hi - lo)));
      if (end > chunk_end) return;
      digests[order[next]] = hasher.digest();
      hasher.reset();
      ++next;
    }
  }
};

void pread_exact(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_os_error("cannot read", path, errno);
    if (n == 0) throw Error(ErrorKind::io, fmt::format("{}: file ended at byte {} (did it shrink?)", path, offset + done));
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

FileDigests scan_output_file(const st::File& file, std::span<std::byte> buffer, convert::Progress& progress) {
  const auto& tensors = file.header().tensors;
  TensorCursor cursor{file, std::vector<std::size_t>(tensors.size()), 0, {}};
  std::iota(cursor.order.begin(), cursor.order.end(), std::size_t{0});
  std::sort(cursor.order.begin(), cursor.order.end(),
            [&](std::size_t a, std::size_t b) { return tensors[a].begin < tensors[b].begin; });
  FileDigests digests;
  digests.size = file.size();
  digests.tensors.assign(tensors.size(), convert::xxh3(std::string_view()));
  convert::Hasher whole;
  for (std::uint64_t at = 0; at < file.size();) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), file.size() - at));
    pread_exact(file.fd(), file.path(), at, buffer.first(n));
    whole.update(buffer.first(n));
    cursor.feed(at, buffer.first(n), digests.tensors);
    progress.add(n);
    at += n;
  }
  digests.whole = whole.digest();
  return digests;
}

std::uint64_t hash_whole_file(const std::string& path, std::span<std::byte> buffer, convert::Progress& progress) {
  const ReadOnlyFd file(path);
  const std::uint64_t size = file.size();
  const std::uint64_t digest = convert::hash_file_range(file.fd(), path, 0, size, buffer);
  progress.add(size);
  return digest;
}

}  // namespace shardwise::verify
