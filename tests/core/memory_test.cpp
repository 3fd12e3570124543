// Huge regions: whole 2 MiB pages at a huge page's boundary, a freed one kept (within a bound) and
// handed to the next allocation it can serve, from any thread.
#include <shardwise/core/memory.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

namespace shardwise {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

bool at_huge_page(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % (2 * kMiB) == 0; }

TEST_CASE("a huge buffer starts at a huge page and holds the bytes asked for") {
  release_cached_huge();
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{1}, kMiB, 2 * kMiB - 1, 2 * kMiB, 2 * kMiB + 1, 5 * kMiB + 3}) {
    CAPTURE(size);
    HugeBuffer buffer = allocate_huge(size);
    REQUIRE(buffer != nullptr);
    CHECK(at_huge_page(buffer.get()));
    std::memset(buffer.get(), 0x5a, std::max<std::size_t>(size, 1));
    CHECK(buffer[std::max<std::size_t>(size, 1) - 1] == 0x5a);
  }
}

TEST_CASE("a freed huge region is kept and handed to the next allocation of its size") {
  const KeepFreedHuge keep;
  release_cached_huge();
  REQUIRE(cached_huge_bytes() == 0);
  HugeBuffer first = allocate_huge(3 * kMiB);  // 4 MiB: two huge pages
  char* const data = first.get();
  first.reset();
  CHECK(cached_huge_bytes() == 4 * kMiB);

  HugeBuffer again = allocate_huge(4 * kMiB);
  CHECK(again.get() == data);
  CHECK(cached_huge_bytes() == 0);

  release_cached_huge();  // nothing kept: nothing to do
  CHECK(cached_huge_bytes() == 0);
}

TEST_CASE("a smaller allocation takes the start of a larger kept region, the rest stays kept") {
  const KeepFreedHuge keep;
  release_cached_huge();
  HugeBuffer large = allocate_huge(6 * kMiB);
  char* const data = large.get();
  large.reset();
  REQUIRE(cached_huge_bytes() == 6 * kMiB);

  HugeBuffer small = allocate_huge(kMiB);
  CHECK(small.get() == data);
  CHECK(cached_huge_bytes() == 4 * kMiB);
  HugeBuffer rest = allocate_huge(4 * kMiB);
  CHECK(rest.get() == data + 2 * kMiB);
  CHECK(cached_huge_bytes() == 0);

  // Given back in pieces, the region is whole again: it serves its full size.
  small.reset();
  rest.reset();
  CHECK(cached_huge_bytes() == 6 * kMiB);
  HugeBuffer whole = allocate_huge(6 * kMiB);
  CHECK(whole.get() == data);
}

TEST_CASE("the kept regions stay within their bound, and release_free_memory unmaps them") {
  const KeepFreedHuge keep;
  release_cached_huge();
  std::vector<HugeBuffer> buffers;
  for (std::size_t total = 0; total < 2 * kHugeCacheBytes; total += 4 * kMiB)
    buffers.push_back(allocate_huge(4 * kMiB));
  buffers.clear();
  CHECK(cached_huge_bytes() > 0);
  CHECK(cached_huge_bytes() <= kHugeCacheBytes);

  // A region larger than the bound is never kept.
  const std::size_t before = cached_huge_bytes();
  allocate_huge(kHugeCacheBytes + 1).reset();
  CHECK(cached_huge_bytes() <= before);

  release_free_memory();
  CHECK(cached_huge_bytes() == 0);
}

TEST_CASE(
    "without a KeepFreedHuge a freed region is unmapped at once, and the last one to end unmaps the kept") {
  release_cached_huge();
  allocate_huge(2 * kMiB).reset();
  CHECK(cached_huge_bytes() == 0);
  {
    const KeepFreedHuge outer;
    {
      const KeepFreedHuge inner;
      allocate_huge(2 * kMiB).reset();
      REQUIRE(cached_huge_bytes() == 2 * kMiB);
    }
    CHECK(cached_huge_bytes() == 2 * kMiB);  // the outer one still lives
    allocate_huge(4 * kMiB).reset();
    CHECK(cached_huge_bytes() == 6 * kMiB);
  }
  CHECK(cached_huge_bytes() == 0);
  allocate_huge(2 * kMiB).reset();
  CHECK(cached_huge_bytes() == 0);
}

TEST_CASE("allocate_array takes a small block from malloc, HugeFree frees both kinds") {
  const KeepFreedHuge keep;
  release_cached_huge();
  for (const std::size_t size : {std::size_t{0}, std::size_t{100}, kMiB - 1, kMiB, 3 * kMiB}) {
    CAPTURE(size);
    std::shared_ptr<char[]> block(allocate_array(size), HugeFree());  // as a header's names are held
    std::memset(block.get(), 1, size);
    CHECK(at_huge_page(block.get()) == (size >= kMiB));
  }
  // The two huge ones: 2 MiB, then 4 MiB that the first region could not serve.
  CHECK(cached_huge_bytes() == 6 * kMiB);
  HugeFree()(nullptr);
}

TEST_CASE("huge vectors of every size keep their elements through growth and copies") {
  const KeepFreedHuge keep;
  release_cached_huge();
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, kMiB / 8 - 1, kMiB / 8,
                              kMiB / 8 + 1, 3 * kMiB / 8, 5 * kMiB / 8 + 7}) {
    CAPTURE(n);
    HugeVector<std::uint64_t> grown;
    for (std::uint64_t i = 0; i < n; ++i) grown.push_back(i * 2654435761U);
    HugeVector<std::uint64_t> sized(n);
    std::iota(sized.begin(), sized.end(), std::uint64_t{7});
    const HugeVector<std::uint64_t> copy = sized;
    for (std::uint64_t i = 0; i < n; ++i) {
      REQUIRE(grown[i] == i * 2654435761U);
      REQUIRE(copy[i] == i + 7);
    }
  }
  CHECK(cached_huge_bytes() <= kHugeCacheBytes);
}

TEST_CASE("threads allocating and freeing huge regions at once never share one") {
  const KeepFreedHuge keep;
  release_cached_huge();
  constexpr int kThreads = 4;
  constexpr int kRounds = 60;
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      std::vector<HugeBuffer> held;
      for (int round = 0; round < kRounds; ++round) {
        const std::size_t size = (1 + static_cast<std::size_t>((round * 7 + t * 3) % 6)) * kMiB;
        HugeBuffer buffer = allocate_huge(size);
        const char mark = static_cast<char>(t * kRounds + round);
        std::memset(buffer.get(), mark, size);
        std::this_thread::yield();
        // Another thread given the same bytes would have written its own mark.
        if (buffer[0] != mark || buffer[size / 2] != mark || buffer[size - 1] != mark) ++failures[t];
        if (round % 3 == 0) held.push_back(std::move(buffer));
        if (held.size() > 2) held.erase(held.begin());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(failures == std::vector<int>(kThreads, 0));
  CHECK(cached_huge_bytes() <= kHugeCacheBytes);
  release_cached_huge();
  CHECK(cached_huge_bytes() == 0);
}

}  // namespace
}  // namespace shardwise
