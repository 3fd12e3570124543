#pragma once
// Memory for large runs. Large buffers are asked for on transparent huge pages: on this project's
// VMs a first touch of a 4 KiB page costs ~20 us, which made page faults a third of `diff`'s time
// and a fifth of `plan`'s. And freed memory handed back to the system: the allocator keeps what a
// phase freed (planning's temporaries, a finished file's manifest entry) for later use, and a later
// block that does not fit the holes left grows the process instead: a long run's peak memory then
// creeps up file by file.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <vector>

namespace shardwise {

struct HugeFree {
  void operator()(char* p) const noexcept;
};
using HugeBuffer = std::unique_ptr<char[], HugeFree>;

// At least `size` bytes, uninitialised, on huge pages where the system gives them: a region of
// whole 2 MiB pages mapped for it, or one freed earlier and kept (below). Its contents are
// whatever was there: a fresh region's are zero, a reused one's what its last owner wrote.
HugeBuffer allocate_huge(std::size_t size);
// `size` bytes, uninitialised, released by HugeFree: on huge pages from 1 MiB on.
char* allocate_array(std::size_t size);

// While a KeepFreedHuge lives (below), a freed huge region is kept for the next allocate_huge it
// can serve rather than unmapped: its pages were written, and a fresh region's pages are each
// zeroed by the kernel when first touched (up to a sixth of `plan`'s CPU on a cold VM: opening a
// checkpoint parses file after file, each into lists of MBs freed at the end of the file). The regions kept
// are bounded by kHugeCacheBytes in all (they count in the process's memory), across threads; the oldest are
// unmapped first. release_free_memory() and release_cached_huge() unmap them all.
extern const std::size_t kHugeCacheBytes;
// The bytes of the freed regions kept now (for tests and measurements).
std::size_t cached_huge_bytes() noexcept;
// For std::vector: a large array on huge pages (allocate_array), a small one from malloc. For lists
// of 100,000s of entries filled once: on huge pages a first touch costs a fault per 2 MiB, not per
// 4 KiB (advise_huge_pages on a vector's block misses the 4 KiB pages at both ends of it).
template <typename T>
struct HugeAllocator {
  static_assert(alignof(T) <= alignof(std::max_align_t), "allocate_array aligns for max_align_t");
  using value_type = T;
  HugeAllocator() = default;
  template <typename U>
  HugeAllocator(const HugeAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  T* allocate(std::size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    return reinterpret_cast<T*>(allocate_array(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t) noexcept { HugeFree()(reinterpret_cast<char*>(p)); }
  friend bool operator==(const HugeAllocator&, const HugeAllocator&) noexcept { return true; }
};
template <typename T>
using HugeVector = std::vector<T, HugeAllocator<T>>;

// Asks for huge pages for the whole 2 MiB pages inside [data, data + bytes) of memory already
// allocated (a list about to be filled). Advice only: without huge pages it is slower, not wrong.
void advise_huge_pages(const void* data, std::size_t bytes) noexcept;

// Memory straight from the system (mmap), outside the allocator's heap, left uninitialised: only
// the pages used count in the process's memory, and freeing it gives them back. For buffers of MBs
// kept through a run: taken from the heap, they could take pages an earlier phase had written,
// which count whether the buffer uses them or not.
class PageBuffer {
 public:
  PageBuffer() = default;
  explicit PageBuffer(std::size_t size);  // throws std::bad_alloc
  PageBuffer(PageBuffer&& other) noexcept;
  PageBuffer& operator=(PageBuffer&& other) noexcept;
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  ~PageBuffer();

  std::span<std::byte> span() const noexcept { return {data_, size_}; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// From now on, blocks of 1 MiB and more are taken from the system and given back when freed, and
// the heap gives back its free end above 4 MiB (glibc: fixed mmap and trim thresholds; elsewhere
// nothing). glibc otherwise raises its threshold to the largest block freed so far (planning frees
// blocks of 10s of MB), and every later block below it stays in the heap once freed: the header
// text of each file a run opens, the buffer of each manifest entry. For the phases after planning.
void give_back_large_blocks() noexcept;

// Returns the free pages of every allocator arena to the system (glibc's malloc_trim; elsewhere
// nothing), and unmaps the freed huge regions kept for reuse. Costs a walk over the free lists:
// call it between phases, not per tensor.
void release_free_memory() noexcept;
// Unmaps the freed huge regions kept for reuse (release_free_memory without the heap's walk).
void release_cached_huge() noexcept;
// While one lives (on any thread), a freed huge region is kept for reuse rather than unmapped; when
// the last ends, the kept ones are unmapped. Around work that frees lists of MBs and asks for them
// again (Checkpoint::open parses file after file): nothing stays kept after it, so the phases
// after it (planning, printing, converting) do not carry kept regions in their peak memory.
class KeepFreedHuge {
 public:
  KeepFreedHuge() noexcept;
  ~KeepFreedHuge();
  KeepFreedHuge(const KeepFreedHuge&) = delete;
  KeepFreedHuge& operator=(const KeepFreedHuge&) = delete;
};

}  // namespace shardwise
