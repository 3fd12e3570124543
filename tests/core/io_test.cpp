// When a run counts as larger than the page cache: measured against the machine's memory as
// /proc/meminfo reports it (MemTotal is a little below the physical pages the code counts).
#include <shardwise/core/io.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <fstream>
#include <limits>
#include <string>

namespace shardwise::io {
namespace {

std::uint64_t mem_total_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  while (meminfo >> key >> kib) {
    if (key == "MemTotal:") return kib * 1024;
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

TEST_CASE("a run exceeds the page cache when it moves more than half of memory") {
  const std::uint64_t memory = mem_total_bytes();
  REQUIRE(memory > 0);
  CHECK_FALSE(exceeds_page_cache(0));
  CHECK_FALSE(exceeds_page_cache(memory / 4));
  CHECK_FALSE(exceeds_page_cache(memory / 2 - memory / 10));
  CHECK(exceeds_page_cache(memory / 2 + memory / 10));
  CHECK(exceeds_page_cache(memory));
  CHECK(exceeds_page_cache(std::numeric_limits<std::uint64_t>::max()));
}

}  // namespace
}  // namespace shardwise::io
