#pragma once
// The finished output entries of a run's manifest, kept as the text the manifest holds them in,
// in a file of their own that has no name (it goes with the process, however it ends): a run
// rewrites its manifest as each file lands, and at 100,000s of tensors the entries held as objects
// were 10s of MB, formatted again at every rewrite. Each rewrite copies them instead. Internal to
// output.

#include <cstdint>
#include <string>
#include <string_view>

#include <shardwise/output/manifest.hpp>

#include "output/atomic_file.hpp"

namespace shardwise::output {

class EntryTexts {
 public:
  // Where an entry's text is in the store.
  struct Span {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };

  // Creates the store in `folder` (the output folder: copies stay within one file system).
  // Throws Error(io) naming the folder.
  explicit EntryTexts(const std::string& folder);
  EntryTexts(const EntryTexts&) = delete;
  EntryTexts& operator=(const EntryTexts&) = delete;
  ~EntryTexts();

  // Appends the entry's text as format_output_entry writes it, with its checksums (its tensors
  // from `tensors` when given).
  Span add(const ManifestOutput& entry, const TensorLines* tensors = nullptr);
  // Appends the entry's text with its checksums, its tensors' lines (format_tensor_line) copied
  // from `lines` in `from`: an entry an earlier run recorded (EarlierEntries).
  Span add(const ManifestOutput& entry, const EntryTexts& from, Span lines);
  // Appends `text` as it is: tensor lines gathered for an entry.
  void append(std::string_view text);
  // Where the next text appended starts.
  std::uint64_t end() const noexcept { return end_; }
  // Appends the text at `span` to `file`.
  void copy_to(Span span, AtomicFile& file) const;

 private:
  std::string folder_;
  int fd_ = -1;
  std::uint64_t end_ = 0;
};

}  // namespace shardwise::output
