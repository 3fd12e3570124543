#pragma once
// A safetensors file opened for reading: header validated, data memory-mapped (read-only, never
// copied into anonymous memory).

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>

#include <shardwise/safetensors/header.hpp>

namespace shardwise::st {

class File {
 public:
  // Reads only the header; the data is mapped lazily on the first call to data().
  // Throws Error(input) for malformed files, Error(io) when the OS refuses.
  static File open(const std::string& path);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::string& path() const noexcept { return path_; }
  const Header& header() const noexcept { return header_; }
  std::uint64_t size() const noexcept { return size_; }
  int fd() const noexcept { return fd_; }
  // Absolute offset in the file of a tensor's first byte.
  std::uint64_t absolute_offset(const TensorInfo& t) const noexcept { return header_.data_start + t.begin; }
  // The tensor's bytes in the mapping. Maps the file on first use (thread-safe).
  std::span<const std::byte> data(const TensorInfo& t) const;

 private:
  File() = default;
  void map() const;

  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  Header header_;
  mutable const std::byte* map_ = nullptr;
  mutable std::once_flag* mapped_ = nullptr;  // heap-held so File stays movable
};

}  // namespace shardwise::st
