#include <shardwise/output/progress.hpp>

#include <unistd.h>

#include <cmath>

#include <fmt/format.h>

#include <shardwise/core/printable.hpp>

namespace shardwise::output {

namespace {

// How often each kind of report is refreshed: often enough to look alive on a terminal, rarely
// enough not to flood a log file.
constexpr auto kLiveInterval = std::chrono::milliseconds(250);
constexpr auto kLinesInterval = std::chrono::seconds(5);

std::string format_duration(double seconds) {
  const auto s = static_cast<std::uint64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
}

}  // namespace

std::string format_progress(std::uint64_t done, std::uint64_t total, double seconds,
                            const std::string& current) {
  const double gb = 1e9;
  const double percent = total == 0 ? 100.0 : 100.0 * static_cast<double>(done) / static_cast<double>(total);
  std::string line = fmt::format("{:.2f}/{:.2f} GB ({:.0f}%)", static_cast<double>(done) / gb,
                                 static_cast<double>(total) / gb, std::floor(percent));
  if (seconds > 0 && done > 0) {
    const double rate = static_cast<double>(done) / seconds;
    line += fmt::format("  {:.2f} GB/s", rate / gb);
    if (done < total) line += "  ETA " + format_duration(static_cast<double>(total - done) / rate);
  }
  if (!current.empty()) line += "  " + current;
  return line;
}

Progress::Progress(ProgressMode mode, std::uint64_t total_bytes, std::FILE* stream)
    : mode_(mode), total_(total_bytes), stream_(stream), start_(std::chrono::steady_clock::now()) {
  if (mode_ == ProgressMode::automatic) {
    mode_ = ::isatty(::fileno(stream_)) ? ProgressMode::live : ProgressMode::lines;
  }
  if (mode_ != ProgressMode::quiet) thread_ = std::thread([this] { run(); });
}

Progress::~Progress() { finish(); }

void Progress::set_current(const std::string& name) {
  std::lock_guard lock(mutex_);
  current_ = printable(name);  // a file name from the input, shown on a terminal
}

void Progress::finish() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (mode_ == ProgressMode::live && drawn_) {
    fmt::print(stream_, "\r\033[K");
    std::fflush(stream_);
  }
}

void Progress::run() {
  const auto interval = mode_ == ProgressMode::live ? std::chrono::steady_clock::duration(kLiveInterval)
                                                    : std::chrono::steady_clock::duration(kLinesInterval);
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, interval, [this] { return stopping_; })) {
    const std::string line = format_progress(
        done(), total_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(),
        current_);
    if (mode_ == ProgressMode::live) {
      fmt::print(stream_, "\r\033[K{}", line);
      drawn_ = true;
    } else {
      fmt::print(stream_, "progress: {}\n", line);
    }
    std::fflush(stream_);
  }
}

}  // namespace shardwise::output
