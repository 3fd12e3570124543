#pragma once
// Internal to `diff`: memory for the text of two full-size plans (80+ MB each) and their records,
// on huge pages when large (core/memory.hpp).

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/core/memory.hpp>

namespace shardwise::plan::detail {

using shardwise::allocate_array;
using shardwise::allocate_huge;
using shardwise::HugeAllocator;
using shardwise::HugeBuffer;
using shardwise::HugeFree;
using shardwise::HugeVector;

// Bytes appended and never moved: the views add() returns stay valid as long as the store (moving
// the store keeps them valid too).
class TextStore {
 public:
  std::string_view add(std::string_view text);
  // Forgets every text added (their views become invalid) and keeps the last block for what is
  // added next: for text made anew for each of many rows.
  void clear() noexcept;

 private:
  std::vector<HugeBuffer> blocks_;
  char* next_ = nullptr;
  std::size_t left_ = 0;
  std::size_t block_ = 0;      // the size the next block doubles
  std::size_t last_size_ = 0;  // the last block's size
};

// The largest plan file read: 1 GiB, 12 times a plan of 240,032 tensors (86 MB).
inline constexpr std::size_t kMaxPlanBytes = std::size_t{1} << 30;

// A whole file's bytes, in a buffer reused from one file to the next.
class FileText {
 public:
  // Replaces the text with `path`'s bytes. Throws Error(io) naming `path` when it cannot be read,
  // Error(input) when it holds more than `max_bytes` (a pipe is read up to there, not to its end).
  void read(const std::string& path, std::size_t max_bytes = kMaxPlanBytes);
  std::string_view view() const noexcept { return {data_.get(), size_}; }

 private:
  HugeBuffer data_;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

// A regular file read front to back through a buffer of `capacity` bytes, for a reader that needs
// only the text ahead of where it is: a full-size plan is read without holding its 80+ MB (nor
// touching that much fresh memory, which costs ~1 ms a MB on this project's VMs).
class FileWindow {
 public:
  // Opens `path` and reads the first buffer. Throws Error(io) naming `path` when it cannot be
  // read, Error(input) as FileText::read once more than `max_bytes` were read.
  // `ahead`: how much text its reader wants ahead of where it is (a part of `capacity`).
  FileWindow(const std::string& path, std::size_t capacity, std::size_t ahead,
             std::size_t max_bytes = kMaxPlanBytes);
  ~FileWindow();
  FileWindow(const FileWindow&) = delete;
  FileWindow& operator=(const FileWindow&) = delete;

  std::string_view text() const noexcept { return {buffer_.get(), size_}; }
  bool at_end() const noexcept { return at_end_; }  // text() holds the end of the file
  std::size_t ahead() const noexcept { return ahead_; }
  // Drops the text before `from` (the rest moves to the front) and reads until the buffer is full
  // or the file ends.
  void slide(std::size_t from);

 private:
  void fill();

  const std::string& path_;
  int fd_ = -1;
  HugeBuffer buffer_;
  std::size_t capacity_ = 0;
  std::size_t ahead_ = 0;
  std::size_t size_ = 0;
  std::size_t total_ = 0;  // bytes read from the file
  std::size_t max_bytes_ = 0;
  bool at_end_ = false;
};

}  // namespace shardwise::plan::detail
