#pragma once
// Reading for verification: files opened read-only and hashed with pread through caller-owned
// buffers, never mapped (mapped pages would count in the process's RSS). Internal to verify.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <shardwise/output/page_cache.hpp>
#include <shardwise/output/progress.hpp>
#include <shardwise/safetensors/file.hpp>

#include <shardwise/core/io.hpp>

namespace shardwise::verify {

// XXH3-64 of a whole output file and of each of its tensors.
struct FileDigests {
  std::uint64_t size = 0;
  std::uint64_t whole = 0;
  std::vector<std::uint64_t> tensors;  // same order as the header's tensors
};

// An output file as a scan reads it: its descriptor (a duplicate of the st::File's), size and each
// tensor's bytes, in the header's order. The header itself (its names and shapes, 100+ bytes a
// tensor) is not kept: a full-size model's outputs list 100,000s of tensors.
class ScanTarget {
 public:
  struct Range {
    std::uint64_t begin = 0;  // absolute offsets in the file
    std::uint64_t end = 0;
  };
  // Throws Error(io) naming the file when its descriptor cannot be duplicated.
  explicit ScanTarget(const st::File& file);
  ScanTarget(ScanTarget&& other) noexcept;
  ScanTarget& operator=(ScanTarget&&) = delete;
  ScanTarget(const ScanTarget&) = delete;
  ScanTarget& operator=(const ScanTarget&) = delete;
  ~ScanTarget();

  int fd() const noexcept { return fd_; }
  const std::string& path() const noexcept { return path_; }
  std::uint64_t size() const noexcept { return size_; }
  const std::vector<Range>& tensors() const noexcept { return tensors_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::vector<Range> tensors_;
};

// Hashes `file` from its first byte to its last in one sequential pass through `buffer`, feeding
// each tensor's bytes to its own digest on the way. Adds the bytes read to `progress`. Throws
// Error(io/input) naming the file when it cannot be read to its end. With `cache` drop, what was
// read leaves the page cache behind the scan.
FileDigests scan_output_file(const ScanTarget& file, std::span<std::byte> buffer, output::Progress& progress,
                             output::PageCache cache = output::PageCache::keep);

// XXH3-64 of a whole file (a side file), read through `buffer`.
std::uint64_t hash_whole_file(const std::string& path, std::span<std::byte> buffer,
                              output::Progress& progress);

}  // namespace shardwise::verify
