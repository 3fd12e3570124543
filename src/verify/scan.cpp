#include "verify/scan.hpp"

#include <algorithm>
#include <numeric>
#include <utility>

#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>

namespace shardwise::verify {

namespace {

// Feeds the part of `chunk` (which starts at absolute offset `at`) that falls in each tensor to
// that tensor's digest, finishing the tensors that end within it. `next` walks `order` (tensors
// by data offset), which tile the data buffer without gaps.
struct TensorCursor {
  const st::File& file;
  std::vector<std::size_t> order;
  std::size_t next = 0;
  output::Hasher hasher;

  void feed(std::uint64_t at, std::span<const std::byte> chunk, std::vector<std::uint64_t>& digests) {
    const std::uint64_t chunk_end = at + chunk.size();
    while (next < order.size()) {
      const st::TensorInfo& t = file.header().tensors[order[next]];
      const std::uint64_t begin = file.absolute_offset(t);
      const std::uint64_t end = begin + t.bytes();
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

FileDigests scan_output_file(const st::File& file, std::span<std::byte> buffer, output::Progress& progress,
                             output::PageCache cache) {
  const auto& tensors = file.header().tensors;
  TensorCursor cursor{file, std::vector<std::size_t>(tensors.size()), 0, {}};
  std::iota(cursor.order.begin(), cursor.order.end(), std::size_t{0});
  std::sort(cursor.order.begin(), cursor.order.end(),
            [&](std::size_t a, std::size_t b) { return tensors[a].begin < tensors[b].begin; });
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
