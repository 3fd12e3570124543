#pragma once
// A small file written whole under a temporary name (st::temp_path_for, registered for removal on
// SIGINT/SIGTERM) and renamed into place: side files and the manifest. Internal to output.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace shardwise::output {

class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  // With an explicit temporary path (in the same folder), for files several processes may write.
  AtomicFile(std::string final_path, std::string temp_path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  // Removes the temporary file unless commit() succeeded.
  ~AtomicFile();

  // Narrows the file's permissions to those `source_mode` grants too: a copy is readable by no one
  // its source is not readable by (created 0644 less the umask, it is never wider than that).
  void narrow_mode(unsigned source_mode);
  // Appends `data`. Throws Error(io) naming the temporary path.
  void write(std::span<const std::byte> data);
  // Appends the `length` bytes at `offset` of the open file `fd` (named `source` in messages), in
  // the kernel where the file system can (copy_file_range), else through a buffer.
  void append_copy(int fd, const std::string& source, std::uint64_t offset, std::uint64_t length);
  // Closes and renames into place.
  void commit();

 private:
  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

struct Manifest;
// Writes `manifest` as format_manifest does, a megabyte at a time, then commits `file`.
void write_manifest_file(AtomicFile& file, const Manifest& manifest);

// The temporary the folder's manifest is written through: `writer` names it
// (`.shardwise-manifest.json.<writer>.partial`) so that processes completing the same manifest at
// once never share one; empty: st::temp_path_for's.
std::string manifest_temp_path(const std::string& folder, const std::string& writer);

void write_file_atomically(const std::string& final_path, const std::string& bytes);

}  // namespace shardwise::output
