#pragma once
// A small SHA-256 (FIPS 180-4) for tests that pin byte streams to published digests.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace shardwise::test {

// Lower-case hex digest of `size` bytes at `data`.
std::string sha256_hex(const void* data, std::size_t size);
inline std::string sha256_hex(std::string_view bytes) { return sha256_hex(bytes.data(), bytes.size()); }

}  // namespace shardwise::test
