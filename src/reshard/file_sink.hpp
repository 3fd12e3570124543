#pragma once
// Where the gathered bytes of one new file go: hashed (the file and each tensor) and written, in
// order. With Mode::write_behind a second thread hashes and writes one block while the gathering
// thread fills the other, so that a single file keeps two threads busy. With `drop`, what was
// written kDropBehindBytes earlier is waited for and dropped from the page cache as the writing
// goes on, and the rest by finish() (convert's --page-cache drop). Internal to reshard.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include <shardwise/output/checksum.hpp>
#include <shardwise/output/file_work.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/output/progress.hpp>
#include <shardwise/safetensors/writer.hpp>

namespace shardwise::reshard {

class FileSink {
 public:
  enum class Mode { inline_write, write_behind };

  // `out` was created with `work.layout`; its data is written from work.layout.data_start on.
  FileSink(st::OutputFile& out, const output::FileWork& work, std::size_t block_bytes, Mode mode, bool drop,
           output::Progress& progress);
  ~FileSink();  // stops the second thread (whatever it had not written stays unwritten)
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  std::size_t block_bytes() const noexcept { return block_bytes_; }
  // Where the next n bytes (at most block_bytes()) go; valid until the next call.
  std::span<std::byte> reserve(std::size_t n);
  // The bytes since the last end_tensor() are the file's tensor `index` (an index layout.order
  // holds: the new file's tensors in the plan), complete.
  void end_tensor(std::size_t index);
  std::uint64_t gathered() const noexcept { return gathered_; }
  // Waits until every byte is written (with drop: on disk and out of the page cache). Rethrows what
  // the second thread failed with.
  void finish();
  // Once finished: the file's entry, its checksums (its tensors' xxh3 alone: their names, cuts and
  // origins are the caller's to fill in). Made when it is recorded, not before: at a large model's
  // tensor count, 20 MB for each file.
  output::ManifestOutput entry() const;

 private:
  struct Block {
    std::vector<std::byte> data;
    std::size_t used = 0;
    std::uint64_t offset = 0;
    std::optional<std::size_t> ends_tensor;
    bool pending = false;  // handed to the second thread, not yet written
  };

  void submit();
  void process(Block& block);
  void behind_loop();
  void wait_free(std::size_t b);

  st::OutputFile& out_;
  const output::FileWork& work_;
  std::size_t block_bytes_;
  bool drop_;
  std::uint64_t dropped_to_ = 0;  // with drop: the file's bytes before this offset left the page cache
  output::Progress& progress_;
  Block blocks_[2];
  std::size_t current_ = 0;
  std::uint64_t gathered_ = 0;
  output::Hasher file_hash_;
  output::Hasher tensor_hash_;
  std::vector<std::uint64_t> tensor_xxh3_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread behind_;
};

}  // namespace shardwise::reshard
