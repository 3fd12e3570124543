// Ways to move bytes that are only copied (no cast) from an input file to a new output file while
// hashing them (XXH3, as convert does), each timed in CPU (user + sys) and wall: today's
// pread + hash + pwrite, mmap of the input (hash from the mapping, then pwrite from it or
// copy_file_range), pread + copy_file_range, and copy_file_range alone (cp's floor, no hash);
// with several piece sizes and write-back (sync_file_range) intervals. Every variant ends with
// fsync, and its output's XXH3 is checked against the input's. After each, what the next reader
// pays: the CPU of copying the output (page cache warm) with copy_file_range, as cp does.
//
//   bench/copy_paths.sh [BUILD_DIR] INPUT OUTPUT_DIR [ROUNDS]
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <xxh_x86dispatch.h>  // as src/output/checksum.cpp: AVX2/AVX-512 chosen at run time
#include <xxhash.h>

namespace {

// XXH3-64 over a stream of spans, as shardwise's output::Hasher.
class Hasher {
 public:
  Hasher() : state_(XXH3_createState()) { XXH3_64bits_reset(state_); }
  ~Hasher() { XXH3_freeState(state_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void update(std::span<const std::byte> bytes) { XXH3_64bits_update(state_, bytes.data(), bytes.size()); }
  std::uint64_t digest() const { return XXH3_64bits_digest(state_); }

 private:
  XXH3_state_t* state_;
};

enum class Way {
  pread_pwrite,
  windows_then_pwrite,
  pread_pwrite_huge,
  pread_pwrite_nohash,
  mmap_pwrite,
  mmap_copy_range,
  pread_copy_range,
  copy_range_only
};

struct Variant {
  const char* name;
  Way way;
  std::size_t piece;
  std::size_t writeback;  // sync_file_range(WRITE) every this many bytes; 0: never (fsync only)
};

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

void pread_all(int fd, std::byte* p, std::size_t n, off_t at) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, at);
    if (r <= 0) die("pread");
    p += r, n -= static_cast<std::size_t>(r), at += r;
  }
}

void pwrite_all(int fd, const std::byte* p, std::size_t n, off_t at) {
  while (n > 0) {
    const ssize_t r = ::pwrite(fd, p, n, at);
    if (r <= 0) die("pwrite");
    p += r, n -= static_cast<std::size_t>(r), at += r;
  }
}

void copy_range(int in, int out, std::size_t n, off_t at) {
  off_t from = at, to = at;
  while (n > 0) {
    const ssize_t r = ::copy_file_range(in, &from, out, &to, n, 0);
    if (r <= 0) die("copy_file_range");
    n -= static_cast<std::size_t>(r);
  }
}

std::uint64_t run(const Variant& v, int in, std::size_t size, const std::string& out_path) {
  const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0) die("open output");
  if (::fallocate(out, 0, 0, static_cast<off_t>(size)) != 0) die("fallocate");
  Hasher hash;
  std::vector<std::byte> owned(v.way == Way::pread_pwrite || v.way == Way::pread_pwrite_nohash ||
                                       v.way == Way::windows_then_pwrite || v.way == Way::pread_copy_range
                                   ? v.piece
                                   : 0);
  std::span<std::byte> buffer = owned;
  void* huge = nullptr;
  if (v.way == Way::pread_pwrite_huge) {  // 2 MiB pages: a few TLB entries for the whole buffer
    if (::posix_memalign(&huge, 2 << 20, v.piece) != 0) die("posix_memalign");
    ::madvise(huge, v.piece, MADV_HUGEPAGE);
    std::memset(huge, 0, v.piece);
    buffer = {static_cast<std::byte*>(huge), v.piece};
  }
  std::size_t sent = 0;
  for (std::size_t at = 0; at < size; at += v.piece) {
    const std::size_t n = std::min(v.piece, size - at);
    const auto offset = static_cast<off_t>(at);
    switch (v.way) {
      case Way::pread_pwrite:
        pread_all(in, buffer.data(), n, offset);
        hash.update({buffer.data(), n});
        pwrite_all(out, buffer.data(), n, offset);
        break;
      case Way::pread_pwrite_huge:
        pread_all(in, buffer.data(), n, offset);
        hash.update({buffer.data(), n});
        pwrite_all(out, buffer.data(), n, offset);
        break;
      case Way::windows_then_pwrite:  // read and hashed 256 KiB at a time, written at once
        for (std::size_t w = 0; w < n; w += 256 << 10) {
          const std::size_t m = std::min<std::size_t>(256 << 10, n - w);
          pread_all(in, buffer.data() + w, m, offset + static_cast<off_t>(w));
          hash.update({buffer.data() + w, m});
        }
        pwrite_all(out, buffer.data(), n, offset);
        break;
      case Way::pread_pwrite_nohash:
        pread_all(in, buffer.data(), n, offset);
        pwrite_all(out, buffer.data(), n, offset);
        break;
      case Way::pread_copy_range:
        pread_all(in, buffer.data(), n, offset);
        hash.update({buffer.data(), n});
        copy_range(in, out, n, offset);
        break;
      case Way::mmap_pwrite:
      case Way::mmap_copy_range: {
        void* map = ::mmap(nullptr, n, PROT_READ, MAP_SHARED | MAP_POPULATE, in, offset);
        if (map == MAP_FAILED) die("mmap");
        const auto* bytes = static_cast<const std::byte*>(map);
        hash.update({bytes, n});
        if (v.way == Way::mmap_pwrite)
          pwrite_all(out, bytes, n, offset);
        else
          copy_range(in, out, n, offset);
        ::munmap(map, n);
        break;
      }
      case Way::copy_range_only:
        copy_range(in, out, n, offset);
        break;
    }
    if (v.writeback != 0 && (at + n) / v.writeback > sent / v.writeback) {
      const std::size_t to = (at + n) / v.writeback * v.writeback;
      ::sync_file_range(out, static_cast<off_t>(sent), static_cast<off_t>(to - sent), SYNC_FILE_RANGE_WRITE);
      sent = to;
    }
  }
  if (::fsync(out) != 0) die("fsync");
  ::close(out);
  std::free(huge);
  return hash.digest();
}

std::uint64_t file_xxh3(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) die("open");
  Hasher hash;
  std::vector<std::byte> buffer(8 << 20);
  for (;;) {
    const ssize_t r = ::read(fd, buffer.data(), buffer.size());
    if (r < 0) die("read");
    if (r == 0) break;
    hash.update({buffer.data(), static_cast<std::size_t>(r)});
  }
  ::close(fd);
  return hash.digest();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s INPUT OUTPUT_DIR [ROUNDS]\n", argv[0]);
    return 2;
  }
  const std::string input = argv[1];
  const std::string out_path = std::string(argv[2]) + "/copy_paths.out";
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  const int in = ::open(input.c_str(), O_RDONLY);
  if (in < 0) die("open input");
  struct stat st {};
  ::fstat(in, &st);
  const auto size = static_cast<std::size_t>(st.st_size);
  const std::uint64_t expected = file_xxh3(input);  // also warms the page cache

  constexpr std::size_t MiB = 1 << 20;
  const std::vector<Variant> all = {
      {"pread+pwrite 8M, wb 8M (today)", Way::pread_pwrite, 8 * MiB, 8 * MiB},
      {"pread+pwrite 8M, wb 64M", Way::pread_pwrite, 8 * MiB, 64 * MiB},
      {"pread+pwrite 8M, no wb", Way::pread_pwrite, 8 * MiB, 0},
      {"pread+pwrite 32M, wb 32M", Way::pread_pwrite, 32 * MiB, 32 * MiB},
      {"pread+pwrite 1M, wb 8M", Way::pread_pwrite, 1 * MiB, 8 * MiB},
      {"pread+pwrite 256K, wb 8M", Way::pread_pwrite, MiB / 4, 8 * MiB},
      {"mmap+hash+pwrite 8M, wb 8M", Way::mmap_pwrite, 8 * MiB, 8 * MiB},
      {"mmap+hash+copy_range 8M, wb 8M", Way::mmap_copy_range, 8 * MiB, 8 * MiB},
      {"pread+hash+copy_range 8M, wb 8M", Way::pread_copy_range, 8 * MiB, 8 * MiB},
      {"pread+hash+copy_range 1M, wb 8M", Way::pread_copy_range, 1 * MiB, 8 * MiB},
      {"copy_range only 8M, wb 8M (no hash)", Way::copy_range_only, 8 * MiB, 8 * MiB},
      {"pread+pwrite 8M huge pages, wb 8M", Way::pread_pwrite_huge, 8 * MiB, 8 * MiB},
      {"pread+pwrite 8M, wb 8M (no hash)", Way::pread_pwrite_nohash, 8 * MiB, 8 * MiB},
      {"pread+pwrite 256K, wb 8M (no hash)", Way::pread_pwrite_nohash, MiB / 4, 8 * MiB},
      {"pread+pwrite 64K, wb 8M", Way::pread_pwrite, MiB / 16, 8 * MiB},
      {"pread+hash 256K windows, pwrite 8M", Way::windows_then_pwrite, 8 * MiB, 8 * MiB},
      {"pread+pwrite 2M, wb 8M", Way::pread_pwrite, 2 * MiB, 8 * MiB},
  };
  // VARIANTS="0 4 8" picks some of them (by index, as listed).
  std::vector<Variant> variants;
  if (const char* pick = std::getenv("VARIANTS")) {
    for (const char* p = pick; *p != 0;) {
      char* end = nullptr;
      const unsigned long i = std::strtoul(p, &end, 10);
      if (end == p) break;
      if (i < all.size()) variants.push_back(all[i]);
      p = end;
    }
  } else {
    variants = all;
  }
  std::printf("input %s: %.2f GB, %d rounds, variants interleaved\n", input.c_str(), size / 1e9, rounds);
  std::vector<std::vector<double>> cpu(variants.size()), wall(variants.size()), copy_cpu(variants.size());
  for (int r = 0; r < rounds; ++r) {
    for (std::size_t i = 0; i < variants.size(); ++i) {
      ::unlink(out_path.c_str());
      ::sync();
      const double c0 = cpu_seconds();
      const auto w0 = std::chrono::steady_clock::now();
      const std::uint64_t digest = run(variants[i], in, size, out_path);
      wall[i].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
      cpu[i].push_back(cpu_seconds() - c0);
      {  // what the next reader pays: cp's in-kernel copy of the output just written (page cache warm)
        const std::string copy_path = out_path + ".copy";
        const int src = ::open(out_path.c_str(), O_RDONLY);
        const int dst = ::open(copy_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (src < 0 || dst < 0) die("open for the copy");
        const double r0 = cpu_seconds();
        for (std::size_t at = 0; at < size; at += 8 * MiB)
          copy_range(src, dst, std::min(8 * MiB, size - at), static_cast<off_t>(at));
        copy_cpu[i].push_back(cpu_seconds() - r0);
        ::close(src);
        ::close(dst);
        ::unlink(copy_path.c_str());
      }
      const bool hashed =
          variants[i].way != Way::copy_range_only && variants[i].way != Way::pread_pwrite_nohash;
      if ((hashed && digest != expected) || file_xxh3(out_path) != expected) {
        std::fprintf(stderr, "%s: output differs from the input\n", variants[i].name);
        return 1;
      }
    }
  }
  for (std::size_t i = 0; i < variants.size(); ++i) {
    std::printf("%-38s cpu", variants[i].name);
    for (double c : cpu[i]) std::printf(" %5.2f", c);
    std::printf("  wall");
    for (double w : wall[i]) std::printf(" %5.2f", w);
    std::printf("  then copy_file_range of the output, cpu");
    for (double c : copy_cpu[i]) std::printf(" %5.2f", c);
    std::printf("\n");
  }
  ::unlink(out_path.c_str());
  return 0;
}
