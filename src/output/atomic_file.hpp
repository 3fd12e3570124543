#pragma once
// A small file written whole under a temporary name (st::temp_path_for, registered for removal on
// SIGINT/SIGTERM) and renamed into place: side files and the manifest. Internal to output.

#include <cstddef>
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

  // Appends `data`. Throws Error(io) naming the temporary path.
  void write(std::span<const std::byte> data);
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

void write_file_atomically(const std::string& final_path, const std::string& bytes);

}  // namespace shardwise::output
