#pragma once
// What convert and verify do with the page cache (docs/convert.md, "Streaming at disk speed").

namespace shardwise::convert {

// The bytes written and the findings are the same whichever is chosen.
enum class PageCache {
  automatic,  // drop when the run's reads and writes together exceed half of physical memory
  keep,       // leave what it read and wrote cached, as plain reads and writes do
  drop,       // drop written ranges once on disk, and input ranges once read for the last time
};

}  // namespace shardwise::convert
