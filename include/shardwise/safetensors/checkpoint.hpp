#pragma once
// A checkpoint: one safetensors file, or a folder of them (with or without
// model.safetensors.index.json). Only headers are read when opening.

#include <cstddef>
#include <string>
#include <vector>

#include <shardwise/core/memory.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/safetensors/file.hpp>

namespace shardwise::st {

struct TensorRef {
  std::size_t file = 0;              // index into Checkpoint::files()
  const TensorInfo* info = nullptr;  // points into that file's header
};

class Checkpoint {
 public:
  // `path` is a .safetensors file or a folder. In a folder, the index (when present) must agree
  // exactly with the files: every problem is listed in one Error(input). Without an index, every
  // `*.safetensors` is read, in name order. A tensor name in two files is an error. A file of the
  // folder (or its index) that leads outside it is an error too, unless `links` allows it
  // (core/paths.hpp: a Hugging Face cache's snapshot may lead to its blobs).
  static Checkpoint open(const std::string& path, OutsideLinks links = OutsideLinks::refuse);

  const std::string& root() const noexcept { return root_; }          // the folder (or the file's folder)
  const std::vector<File>& files() const noexcept { return files_; }  // sorted by file name
  // Every tensor, files in name order and tensors in name order within a file (the order the
  // reference converter visits them).
  const HugeVector<TensorRef>& tensors() const noexcept { return tensors_; }
  std::uint64_t total_bytes() const noexcept;
  // The file name (no folder) of a file, as plans and reports show it.
  std::string file_name(std::size_t file) const;

 private:
  std::string root_;
  std::vector<File> files_;
  HugeVector<TensorRef> tensors_;
};

}  // namespace shardwise::st
