#include <shardwise/core/memory.hpp>

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SHARDWISE_POISON(data, size) ASAN_POISON_MEMORY_REGION(data, size)
#define SHARDWISE_UNPOISON(data, size) ASAN_UNPOISON_MEMORY_REGION(data, size)
#else
#define SHARDWISE_POISON(data, size) ((void)(data), (void)(size))
#define SHARDWISE_UNPOISON(data, size) ((void)(data), (void)(size))
#endif

namespace shardwise {

const std::size_t kHugeCacheBytes = std::size_t{32} << 20;

namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kHugeFrom = std::size_t{1} << 20;  // allocate_array's smallest huge block

struct Region {
  char* data = nullptr;
  std::size_t size = 0;  // whole huge pages
};

// A region of `size` bytes (whole huge pages) at a huge page's boundary, where Linux puts a mapping
// of whole huge pages; elsewhere mapped with a huge page more and the ends cut off. Null when the
// system refuses.
char* map_region(std::size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto first = reinterpret_cast<std::uintptr_t>(p);
  std::size_t mapped = size;
  if ((first & (kHugePage - 1)) != 0) {
    ::munmap(p, size);
    mapped = size + kHugePage;
    if (mapped < size) return nullptr;
    p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    first = reinterpret_cast<std::uintptr_t>(p);
  }
  const std::uintptr_t begin = (first + kHugePage - 1) & ~(kHugePage - 1);
  if (begin > first) ::munmap(p, begin - first);
  if (const std::size_t tail = first + mapped - (begin + size); tail > 0)
    ::munmap(reinterpret_cast<void*>(begin + size), tail);
  auto* data = reinterpret_cast<char*>(begin);
  advise_huge_pages(data, size);
  return data;
}

// AddressSanitizer (a SHARDWISE_SANITIZE build) is told that a kept region, and the end of a region
// beyond the bytes asked for, must not be touched; an unmapped region's addresses are cleared for
// whatever is mapped there next.
void unmap_region(const Region& region) noexcept {
  SHARDWISE_UNPOISON(region.data, region.size);
  ::munmap(region.data, region.size);
}

// The huge regions of the process: those in use (their sizes, for HugeFree, which is given only
// the pointer) and those freed and kept for reuse. Few at a time (10s), each of MBs: a lock and
// a linear search cost nothing beside mapping one.
class Regions {
 public:
  // A kept region of at least `size` bytes, the smallest (its end beyond `size` stays kept), or
  // a new one. Null when the system refuses.
  char* take(std::size_t size) {
    {
      const std::lock_guard lock(mutex_);
      if (in_use_.size() == in_use_.capacity()) in_use_.reserve(2 * in_use_.size() + 8);  // may throw
      auto best = kept_.end();
      for (auto it = kept_.begin(); it != kept_.end(); ++it) {
        if (it->size >= size && (best == kept_.end() || it->size < best->size)) best = it;
      }
      if (best != kept_.end()) {
        char* data = best->data;
        kept_bytes_ -= size;
        if (best->size == size) {
          kept_.erase(best);
        } else {
          best->data += size;
          best->size -= size;
        }
        in_use_.push_back(Region{data, size});
        return data;
      }
    }
    char* data = map_region(size);
    if (data == nullptr) return nullptr;
    const std::lock_guard lock(mutex_);
    if (in_use_.size() == in_use_.capacity()) {
      try {
        in_use_.reserve(2 * in_use_.size() + 8);
      } catch (const std::bad_alloc&) {
        ::munmap(data, size);
        throw;
      }
    }
    in_use_.push_back(Region{data, size});
    return data;
  }

  // Takes back a region given by take(): kept, and the oldest kept unmapped beyond the bound.
  // False for a pointer take() did not give.
  bool give_back(char* data) noexcept {
    const std::lock_guard lock(mutex_);
    const auto it =
        std::find_if(in_use_.begin(), in_use_.end(), [data](const Region& r) { return r.data == data; });
    if (it == in_use_.end()) return false;
    const Region region = *it;
    *it = in_use_.back();
    in_use_.pop_back();
    raise_heap_threshold(region.size);
    if (keepers_ == 0 || region.size > kHugeCacheBytes || !keep(region)) {
      unmap_region(region);
      return true;
    }
    SHARDWISE_POISON(region.data, region.size);
    while (kept_bytes_ > kHugeCacheBytes) {  // the oldest, or the end of it that is too much
      Region& oldest = kept_.front();
      const std::size_t excess = std::min(kept_bytes_ - kHugeCacheBytes, oldest.size);
      oldest.size -= excess;
      kept_bytes_ -= excess;
      unmap_region(Region{oldest.data + oldest.size, excess});
      if (oldest.size == 0) kept_.erase(kept_.begin());
    }
    return true;
  }

  void release() noexcept {
    const std::lock_guard lock(mutex_);
    for (const Region& region : kept_) unmap_region(region);
    kept_.clear();
    kept_bytes_ = 0;
  }

  // One more KeepFreedHuge, or one fewer (the last one's end unmaps the kept regions).
  void add_keeper() noexcept {
    const std::lock_guard lock(mutex_);
    ++keepers_;
  }
  void drop_keeper() noexcept {
    {
      const std::lock_guard lock(mutex_);
      if (--keepers_ > 0) return;
    }
    release();
  }

  std::size_t kept_bytes() noexcept {
    const std::lock_guard lock(mutex_);
    return kept_bytes_;
  }

  // From now on the heap's thresholds are left as they are (give_back_large_blocks fixed them).
  void fix_heap_threshold() noexcept {
    const std::lock_guard lock(mutex_);
    heap_threshold_ = kFixedHeapThreshold;
  }

 private:
  // Adds `region` to the kept ones, joined to one it continues or that continues it (the system
  // maps regions next to each other: joined, they serve a larger request) while the whole stays
  // within the bound. False when the list cannot grow (no memory): the caller unmaps the region.
  bool keep(Region region) noexcept {
    for (auto it = kept_.begin(); it != kept_.end();) {
      const bool before = it->data + it->size == region.data;
      const bool after = region.data + region.size == it->data;
      if ((!before && !after) || region.size + it->size > kHugeCacheBytes) {
        ++it;
        continue;
      }
      region = Region{before ? it->data : region.data, it->size + region.size};
      kept_bytes_ -= it->size;
      it = kept_.erase(it);
    }
    if (kept_.size() == kept_.capacity()) {
      try {
        kept_.reserve(2 * kept_.size() + 8);
      } catch (const std::bad_alloc&) {
        return false;
      }
    }
    kept_.push_back(region);
    kept_bytes_ += region.size;
    return true;
  }

  // glibc raises its threshold for taking a block from the system rather than the heap to the
  // largest such block freed (up to 32 MiB), and its threshold for trimming the heap to twice that.
  // Huge regions were such blocks when they were malloc's (aligned_alloc): the heap then served
  // the plan's lists of MBs from memory freed while the checkpoint was read, instead of fresh
  // pages. Freeing a region raises them alike. Called with the lock held: in order.
  void raise_heap_threshold([[maybe_unused]] std::size_t size) noexcept {
    if (size <= heap_threshold_ || size > kMaxHeapThreshold) return;
    heap_threshold_ = size;
#if defined(__GLIBC__)
    ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(size));
    ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(2 * size));
#endif
  }
  static constexpr std::size_t kMaxHeapThreshold = std::size_t{32} << 20;  // glibc's, on 64 bits
  static constexpr std::size_t kFixedHeapThreshold = SIZE_MAX;

  std::mutex mutex_;
  std::vector<Region> in_use_;
  std::vector<Region> kept_;  // oldest first
  std::size_t kept_bytes_ = 0;
  std::size_t keepers_ = 0;         // KeepFreedHuge objects alive
  std::size_t heap_threshold_ = 0;  // as raised so far (kFixedHeapThreshold: left alone)
};

// Never destroyed: HugeFree may run in a static's destructor.
Regions& regions() {
  static Regions* const all = new Regions();
  return *all;
}

}  // namespace

void HugeFree::operator()(char* p) const noexcept {
  // A region begins at a huge page's boundary; a block of malloc's seldom does.
  const bool at_boundary = (reinterpret_cast<std::uintptr_t>(p) & (kHugePage - 1)) == 0;
  if (p != nullptr && at_boundary && regions().give_back(p)) return;
  std::free(p);
}

HugeBuffer allocate_huge(std::size_t size) {
  const std::size_t wanted = std::max<std::size_t>(size, 1);
  if (wanted > SIZE_MAX - kHugePage) throw std::bad_alloc();
  const std::size_t rounded = (wanted + kHugePage - 1) / kHugePage * kHugePage;
  char* data = regions().take(rounded);
  if (data == nullptr) throw std::bad_alloc();
  SHARDWISE_UNPOISON(data, wanted);
  SHARDWISE_POISON(data + wanted, rounded - wanted);
  return HugeBuffer(data);
}

char* allocate_array(std::size_t size) {
  if (size >= kHugeFrom) return allocate_huge(size).release();
  void* p = std::malloc(std::max<std::size_t>(size, 1));
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<char*>(p);
}

std::size_t cached_huge_bytes() noexcept { return regions().kept_bytes(); }

void release_cached_huge() noexcept { regions().release(); }

KeepFreedHuge::KeepFreedHuge() noexcept { regions().add_keeper(); }

KeepFreedHuge::~KeepFreedHuge() { regions().drop_keeper(); }

void advise_huge_pages(const void* data, std::size_t bytes) noexcept {
  const auto first = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t begin = (first + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t end = (first + bytes) & ~(kHugePage - 1);
#ifdef MADV_HUGEPAGE
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)begin;
  (void)end;
#endif
}

PageBuffer::PageBuffer(std::size_t size) : size_(size) {
  if (size == 0) return;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<std::byte*>(p);
}

PageBuffer::PageBuffer(PageBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

PageBuffer& PageBuffer::operator=(PageBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

PageBuffer::~PageBuffer() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

void give_back_large_blocks() noexcept {
  regions().fix_heap_threshold();
#if defined(__GLIBC__)
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 4 << 20);
#endif
}

void release_free_memory() noexcept {
  release_cached_huge();
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

}  // namespace shardwise
