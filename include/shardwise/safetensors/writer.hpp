#pragma once
// Streaming safetensors writing: the header is computed up front from (name, dtype, shape), then
// data is written piece by piece at known offsets, so a file of any size needs bounded memory.

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::st {

struct OutputTensor {
  std::string name;
  DType dtype;
  Shape shape;
};

// The same by reference: name and shape stay where they are (a plan's), for laying out files of
// 10,000s of tensors without a copy of each name and shape.
struct OutputTensorRef {
  std::string_view name;
  DType dtype;
  std::span<const std::uint64_t> shape;
};

// Where everything goes in a file, laid out as the reference implementation writes it: tensors
// ordered by dtype layout rank (larger first) then name (byte order); compact JSON with
// `__metadata__` first; header padded with spaces to a multiple of 8.
struct FileLayout {
  std::string header;                 // the N bytes of JSON, padding included
  std::uint64_t data_start = 0;       // 8 + N
  std::vector<std::size_t> order;     // indices into the input tensors, in data order
  std::vector<std::uint64_t> offset;  // per input tensor (same index): absolute offset in the file
  std::vector<std::uint64_t> bytes;   // per input tensor: its size
  std::uint64_t file_size = 0;
};

// Throws Error(input) on duplicate names or sizes that overflow.
FileLayout layout_file(std::span<const OutputTensor> tensors,
                       const std::map<std::string, std::string>& metadata = {});
FileLayout layout_file_refs(std::span<const OutputTensorRef> tensors,
                            const std::map<std::string, std::string>& metadata = {});

// A file being written: it lives under a temporary name in the target folder (registered so that a
// signal handler can remove it) and appears under its final name only after commit().
class OutputFile {
 public:
  // Creates `<folder>/.<name>.partial`, sized to layout.file_size, with the length prefix and
  // header already written. Throws Error(io) naming the path.
  static OutputFile create(const std::string& final_path, const FileLayout& layout);

  OutputFile(OutputFile&&) noexcept;
  OutputFile& operator=(OutputFile&&) noexcept;
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  // Removes the temporary file unless commit() succeeded.
  ~OutputFile();

  int fd() const noexcept { return fd_; }
  const std::string& temp_path() const noexcept { return temp_path_; }
  const std::string& final_path() const noexcept { return final_path_; }
  // pwrite all of `data` at `offset` (retrying short writes). Thread-safe for disjoint ranges.
  // Throws Error(io) naming the temporary path, also for a range past layout.file_size.
  void write_at(std::uint64_t offset, std::span<const std::byte> data);
  // Starts writing [offset, offset + length) back to disk without waiting (sync_file_range), so
  // that written pages go to disk at its pace instead of piling up as dirty cache. Durability
  // still comes from commit()'s fsync. A filesystem that cannot do this is no error (nothing is
  // started); an I/O error is an Error(io) naming the temporary path.
  void start_writeback(std::uint64_t offset, std::uint64_t length);
  // Waits until [offset, offset + length) is written back, then drops it from the page cache: for
  // files larger than memory, which the run will not read again. Errors as start_writeback.
  void drop_written(std::uint64_t offset, std::uint64_t length);
  // fsync, rename to the final path, fsync the folder. Closes the descriptor; a second call does
  // nothing. Throws Error(io) naming the path.
  void commit();

 private:
  OutputFile() = default;
  // Closes the descriptor and, unless committed, removes and unregisters the temporary.
  void discard() noexcept;

  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;  // layout.file_size: writes past it are refused
  bool committed_ = false;
  bool registered_ = false;  // the temporary is in the cleanup registry (and ours to remove)
};

// The temporary name used for `final_path` (so reruns can find and remove stale ones).
std::string temp_path_for(const std::string& final_path);

}  // namespace shardwise::st
