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

// Hashes `file` from its first byte to its last in one sequential pass through `buffer`, feeding
// each tensor's bytes to its own digest on the way. Adds the bytes read to `progress`. Throws
// Error(io/input) naming the file when it cannot be read to its end. With `cache` drop, what was
// read leaves the page cache behind the scan.
FileDigests scan_output_file(const st::File& file, std::span<std::byte> buffer, output::Progress& progress,
                             output::PageCache cache = output::PageCache::keep);

// XXH3-64 of a whole file (a side file), read through `buffer`.
std::uint64_t hash_whole_file(const std::string& path, std::span<std::byte> buffer,
                              output::Progress& progress);

}  // namespace shardwise::verify
