#pragma once
// What convert and verify do with the page cache (docs/convert.md, "Streaming at disk speed").

#include <cstdint>

namespace shardwise::output {

// The bytes written and the findings are the same whichever is chosen.
enum class PageCache {
  automatic,  // drop when the run's reads and writes together exceed half of physical memory
  keep,       // leave what it read and wrote cached, as plain reads and writes do
  drop,       // drop written ranges once on disk, and input ranges once read for the last time
};

// With drop, a writer waits for and drops what it wrote this far behind its writing.
inline constexpr std::uint64_t kDropBehindBytes = 64u << 20;

}  // namespace shardwise::output
