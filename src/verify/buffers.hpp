#pragma once
// Read buffers, one pair per thread, allocated once: they are most of verify's memory. Internal
// to verify.

#include <algorithm>
#include <cstddef>
#include <span>

#include <shardwise/convert/tensor_stream.hpp>
#include <shardwise/core/memory.hpp>

namespace shardwise::verify {

// All buffers together stay within this, whatever the thread count.
inline constexpr std::size_t kBufferBudget = 64u << 20;
inline constexpr std::size_t kMaxBufferBytes = 4u << 20;
inline constexpr std::size_t kMinBufferBytes = 256u << 10;

inline std::size_t buffer_bytes_for(std::size_t requested, unsigned threads) {
  if (requested != 0) return std::max(requested / 8 * 8, convert::kMinScratchBytes);
  const std::size_t fair = kBufferBudget / (2 * static_cast<std::size_t>(std::max(1u, threads)));
  return std::clamp(fair / (64u << 10) * (64u << 10), kMinBufferBytes, kMaxBufferBytes);
}

// Two buffers per thread: one for the bytes hashed, one as a tensor stream's scratch.
class ThreadBuffers {
 public:
  // Mapped pages, left uninitialised: a page counts in the process's memory once a read uses it
  // (a scratch buffer serves casts only).
  ThreadBuffers(unsigned threads, std::size_t bytes) : bytes_(bytes), storage_(2 * threads * bytes) {}
  std::span<std::byte> main(unsigned worker) { return storage_.span().subspan(2 * worker * bytes_, bytes_); }
  std::span<std::byte> scratch(unsigned worker) {
    return storage_.span().subspan((2 * worker + 1) * bytes_, bytes_);
  }

 private:
  std::size_t bytes_;
  PageBuffer storage_;
};

}  // namespace shardwise::verify
