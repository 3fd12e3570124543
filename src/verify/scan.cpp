#include "verify/scan.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <numeric>
#include <utility>

#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>

namespace shardwise::verify {

ScanTarget::ScanTarget(const st::File& file)
    : path_(file.path()), fd_(::fcntl(file.fd(), F_DUPFD_CLOEXEC, 0)), size_(file.size()) {
  if (fd_ < 0) throw_os_error("cannot open", path_, errno);
  const auto& tensors = file.header().tensors;
  tensors_.reserve(tensors.size());
  for (const st::TensorInfo& t : tensors) {
    const std::uint64_t begin = file.absolute_offset(t);
    tensors_.push_back({begin, begin + t.bytes()});
  }
}

ScanTarget::ScanTarget(ScanTarget&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      size_(other.size_),
      tensors_(std::move(other.tensors_)) {}

ScanTarget::~ScanTarget() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

// Feeds the part of `chunk` (which starts at absolute offset `at`) that falls in each tensor to
// that tensor's digest, finishing the tensors that end within it. `next` walks `order` (tensors
// by data offset), which tile the data buffer without gaps.
struct TensorCursor {
  const std::vector<ScanTarget::Range>& tensors;
  std::vector<std::uint32_t> order;
  std::size_t next = 0;
  output::Hasher hasher;

  void feed(std::uint64_t at, std::span<const std::byte> chunk, std::vector<std::uint64_t>& digests) {
    const std::uint64_t chunk_end = at + chunk.size();
    while (next < order.size()) {
      const auto [begin, end] = tensors[order[next]];
      if (begin >= chunk_end && end > begin) return;
      const std::uint64_t lo = std::max(begin, at);
      const std::uint64_t hi = std::min(end, chunk_end);
      if (hi > lo)
        hasher.update(chunk.subspan(static_cast<std::size_t>(lo - at), static_cast<std::size_t>(hi - lo)));
      if (end > chunk_end) return;
      digests[order[next]] = hasher.digest();
      hasher.reset();
      ++next;
    }
  }
};

}  // namespace

FileDigests scan_output_file(const ScanTarget& file, std::span<std::byte> buffer, output::Progress& progress,
                             output::PageCache cache) {
  const auto& tensors = file.tensors();
  TensorCursor cursor{tensors, std::vector<std::uint32_t>(tensors.size()), 0, {}};
  std::iota(cursor.order.begin(), cursor.order.end(), std::uint32_t{0});
  std::sort(cursor.order.begin(), cursor.order.end(),
            [&](std::uint32_t a, std::uint32_t b) { return tensors[a].begin < tensors[b].begin; });
  FileDigests digests;
  digests.size = file.size();
  digests.tensors.assign(tensors.size(), output::xxh3(std::string_view()));
  output::Hasher whole;
  const bool drop = cache == output::PageCache::drop;
  if (drop) io::advise_sequential(file.fd());
  for (std::uint64_t at = 0; at < file.size();) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), file.size() - at));
    io::pread_exact(file.fd(), file.path(), at, buffer.first(n));
    whole.update(buffer.first(n));
    cursor.feed(at, buffer.first(n), digests.tensors);
    if (drop) io::drop_cached(file.fd(), at, n);
    progress.add(n);
    at += n;
  }
  digests.whole = whole.digest();
  return digests;
}

std::uint64_t hash_whole_file(const std::string& path, std::span<std::byte> buffer,
                              output::Progress& progress) {
  const io::ReadOnlyFile file(path);
  const std::uint64_t size = file.size();
  const std::uint64_t digest = output::hash_file_range(file.fd(), path, 0, size, buffer);
  progress.add(size);
  return digest;
}

}  // namespace shardwise::verify
