#pragma once
// Progress of a long copy on stderr: bytes done / total, rate, ETA and the current file. A live
// line redrawn with `\r` on a terminal, a plain line every few seconds otherwise.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace shardwise::output {

enum class ProgressMode {
  automatic,  // live when the stream is a terminal, lines otherwise
  live,
  lines,
  quiet,
};

// One progress line, e.g. "1.20/3.50 GB (34%)  1.85 GB/s  ETA 2s  model3-mp8.safetensors".
std::string format_progress(std::uint64_t done, std::uint64_t total, double seconds,
                            const std::string& current);

// Reports from a background thread until finish() (or destruction). add() and set_current() are
// thread-safe and cheap enough to call per copied piece.
class Progress {
 public:
  Progress(ProgressMode mode, std::uint64_t total_bytes, std::FILE* stream = stderr);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  void add(std::uint64_t bytes) noexcept { done_.fetch_add(bytes, std::memory_order_relaxed); }
  void set_current(const std::string& name);
  std::uint64_t done() const noexcept { return done_.load(std::memory_order_relaxed); }
  // Stops reporting; a live line is cleared so the next message starts on a clean line.
  void finish();

 private:
  void run();

  ProgressMode mode_;
  std::uint64_t total_;
  std::FILE* stream_;
  std::chrono::steady_clock::time_point start_;
  std::atomic<std::uint64_t> done_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string current_;
  bool stopping_ = false;
  bool drawn_ = false;
  std::thread thread_;
};

}  // namespace shardwise::output
