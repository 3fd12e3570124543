#include "output/resume.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <exception>
#include <mutex>
#include <thread>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>

namespace shardwise::output {

namespace {

constexpr std::size_t kHashBuffer = 4u << 20;

struct Candidate {
  std::size_t work = 0;
  const ManifestOutput* entry = nullptr;
};

// True when the file at `path` has `entry`'s size and whole-file XXH3. A missing file is simply
// not kept, nor is a link or anything but a regular file in its place (it is written again, over
// it: never read through); any other failure to read it is an Error(io).
bool matches_on_disk(const std::string& path, const ManifestOutput& entry, std::span<std::byte> buffer,
                     Progress& progress) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT || errno == ELOOP) return false;
    throw_os_error("cannot open", path, errno);
  }
  struct stat st {};
  const bool sized =
      ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) == entry.bytes;
  bool same = false;
  try {
    same = sized && hash_file_range(fd, path, 0, entry.bytes, buffer) == entry.xxh3;
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  progress.add(entry.bytes);
  return same;
}

}  // namespace

std::vector<bool> files_to_keep(const EarlierEntries& earlier, const std::vector<FileWork>& work,
                                unsigned threads, ProgressMode mode) {
  std::vector<Candidate> candidates;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < work.size(); ++i) {
    const std::optional<EarlierEntries::Entry>& found = earlier.found(work[i].planned->rank);
    if (!found || found->fields.bytes != work[i].layout.file_size) continue;
    candidates.push_back({i, &found->fields});
    total += found->fields.bytes;
  }
  // One byte each: the threads set different items at once (a vector<bool> packs them in words).
  std::vector<char> kept(work.size(), 0);
  if (candidates.empty()) return std::vector<bool>(work.size(), false);

  Progress progress(mode, total);
  progress.set_current("checking earlier outputs");
  std::atomic<std::size_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;
  const auto check = [&] {
    std::vector<std::byte> buffer(kHashBuffer);
    for (std::size_t c; (c = next.fetch_add(1)) < candidates.size();) {
      try {
        if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
        const Candidate& candidate = candidates[c];
        if (matches_on_disk(work[candidate.work].final_path, *candidate.entry, buffer, progress)) {
          kept[candidate.work] = 1;
        }
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        next = candidates.size();
      }
    }
  };
  std::vector<std::thread> pool;
  const std::size_t count = std::clamp<std::size_t>(threads, 1, candidates.size());
  for (std::size_t t = 0; t < count; ++t) pool.emplace_back(check);
  for (std::thread& t : pool) t.join();
  progress.finish();
  if (error) std::rethrow_exception(error);
  return std::vector<bool>(kept.begin(), kept.end());
}

}  // namespace shardwise::output
