#include "reshard/file_sink.hpp"

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/output/page_cache.hpp>

namespace shardwise::reshard {

FileSink::FileSink(st::OutputFile& out, const output::FileWork& work, std::size_t block_bytes, Mode mode,
                   bool drop, output::Progress& progress)
    : out_(out), work_(work), block_bytes_(block_bytes), drop_(drop), progress_(progress) {
  // Writing inline fills and writes one block; the second is for the thread writing behind.
  blocks_[0].data.resize(block_bytes);
  if (mode == Mode::write_behind) blocks_[1].data.resize(block_bytes);
  blocks_[0].offset = work.layout.data_start;
  tensor_xxh3_.resize(work.layout.order.size());
  file_hash_.update(work.prefix);
  file_hash_.update(work.layout.header);
  if (mode == Mode::write_behind) behind_ = std::thread([this] { behind_loop(); });
}

FileSink::~FileSink() {
  if (!behind_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  behind_.join();
}

std::span<std::byte> FileSink::reserve(std::size_t n) {
  if (blocks_[current_].used + n > block_bytes_) submit();
  Block& b = blocks_[current_];
  const auto span = std::span(b.data).subspan(b.used, n);
  b.used += n;
  gathered_ += n;
  return span;
}

void FileSink::end_tensor(std::size_t index) {
  blocks_[current_].ends_tensor = index;
  submit();
}

// Hands the current block on (to the second thread, or writes it here) and makes the other one
// current once it is free.
void FileSink::submit() {
  if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
  Block& b = blocks_[current_];
  const std::uint64_t next_offset = b.offset + b.used;
  if (!behind_.joinable()) {
    process(b);
  } else {
    {
      std::lock_guard lock(mutex_);
      b.pending = true;
    }
    changed_.notify_all();
    current_ = 1 - current_;
    wait_free(current_);
  }
  blocks_[current_].offset = next_offset;
}

void FileSink::wait_free(std::size_t b) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return !blocks_[b].pending || error_; });
  if (error_) std::rethrow_exception(error_);
}

void FileSink::process(Block& block) {
  if (block.used > 0) {
    const auto data = std::span(block.data).first(block.used);
    file_hash_.update(data);
    tensor_hash_.update(data);
    out_.write_at(block.offset, data);
    out_.start_writeback(block.offset, block.used);
    progress_.add(block.used);
    const std::uint64_t end = block.offset + block.used;
    if (drop_ && end >= dropped_to_ + 2 * output::kDropBehindBytes) {
      // Written long enough ago to be on disk already, normally: the wait costs nothing then.
      const std::uint64_t to = end - output::kDropBehindBytes;
      out_.drop_written(dropped_to_, to - dropped_to_);
      dropped_to_ = to;
    }
  }
  if (block.ends_tensor) {
    tensor_xxh3_[*block.ends_tensor] = tensor_hash_.digest();
    tensor_hash_.reset();
  }
  block.used = 0;
  block.ends_tensor.reset();
}

// The second thread: the blocks in the order they were handed on (alternating).
void FileSink::behind_loop() {
  for (std::size_t b = 0;; b = 1 - b) {
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return blocks_[b].pending || stop_; });
      if (!blocks_[b].pending) return;
    }
    try {
      process(blocks_[b]);
    } catch (...) {
      std::lock_guard lock(mutex_);
      error_ = std::current_exception();
      changed_.notify_all();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      blocks_[b].pending = false;
    }
    changed_.notify_all();
  }
}

void FileSink::finish() {
  if (blocks_[current_].used > 0) submit();
  if (behind_.joinable()) {
    wait_free(0);
    wait_free(1);
  }
  if (drop_) out_.drop_written(dropped_to_, work_.layout.file_size - dropped_to_);
  for (Block& b : blocks_) std::vector<std::byte>().swap(b.data);  // before the file's entry is made
}

output::ManifestOutput FileSink::entry() const {
  output::ManifestOutput entry{
      work_.planned->rank, work_.planned->file, work_.layout.file_size, file_hash_.digest(), {}};
  entry.tensors.resize(tensor_xxh3_.size());
  for (std::size_t i = 0; i < tensor_xxh3_.size(); ++i) entry.tensors[i].xxh3 = tensor_xxh3_[i];
  return entry;
}

}  // namespace shardwise::reshard
