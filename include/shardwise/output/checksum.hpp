#pragma once
// XXH3-64 checksums, computed streaming: the manifest records them and `verify` recomputes them.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace shardwise::output {

// An XXH3-64 (seed 0) digest being computed over bytes fed in order. The digest of no bytes is
// XXH3-64 of the empty input.
class Hasher {
 public:
  Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  ~Hasher();

  void reset();
  void update(std::span<const std::byte> bytes);
  void update(std::string_view text);
  std::uint64_t digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::uint64_t xxh3(std::span<const std::byte> bytes);
std::uint64_t xxh3(std::string_view text);

// 16 lowercase hex digits, as the manifest stores digests (the form `xxhsum -H3` prints).
std::string xxh3_hex(std::uint64_t digest);
// The inverse; nullopt unless `text` is exactly 16 hex digits.
std::optional<std::uint64_t> parse_xxh3_hex(std::string_view text);

// Hashes `bytes` bytes of `fd` from `offset` with pread through `buffer` (reused, never grown).
// Throws Error(io) naming `path` on a read error or when the file ends early.
std::uint64_t hash_file_range(int fd, const std::string& path, std::uint64_t offset, std::uint64_t bytes,
                              std::span<std::byte> buffer);

}  // namespace shardwise::output
