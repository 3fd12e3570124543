#pragma once
// The manifest a run keeps up to date while it writes: each file's checksums are added as soon as
// the file is under its final name. That is how a resumed run knows which files a killed one
// finished, and how runs writing parts of one output (--ranks, --distributed) hand their checksums
// to whichever of them completes the folder's manifest. A whole run keeps the folder's manifest
// itself (incomplete until the end); a partial run keeps its own fragment,
// `shardwise-manifest.<key>.json`, listing only the files it finished. Internal to output.

#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/output/manifest.hpp>
#include <shardwise/plan/plan.hpp>

#include "output/atomic_file.hpp"
#include "output/earlier_entries.hpp"
#include "output/entry_texts.hpp"

namespace shardwise::output {

// A name for what a run writes, unique among runs with disjoint rank sets: "ranks-0-3,6" (long
// lists: first and last rank and a hash of the list); a process writing no ranks: "process-K".
std::string share_key(std::span<const std::uint64_t> ranks, std::uint64_t process);
// "shardwise-manifest.<key>.json".
std::string fragment_name(const std::string& key);
bool is_fragment_name(std::string_view name);

class RunManifest {
 public:
  // Writes `start` (incomplete) as `<folder>/<name>`, through the temporary st::temp_path_for
  // gives for `<folder>/<temp_stem>` (distinct for every process that may write at once).
  RunManifest(const std::string& folder, const std::string& name, const std::string& temp_stem,
              Manifest start);

  // Whether record() rewrites the file at once or leaves the entry to the next rewrite.
  enum class Rewrite { now, later };
  // Adds the entry, finished, replacing a planned one of the same file, and rewrites the file.
  // Thread-safe. Throws Error(io) naming the path. Side files are copied again by every run,
  // resumed or not, so their entries may wait (each rewrite writes every tensor's entry again).
  // The entry's tensors are kept as their text (EntryTexts), not as objects.
  // Its tensors from output.tensors, or made one at a time from `lines` (lines.tensor set).
  void record(ManifestOutput output, const TensorLines& lines);
  // The same for an entry an earlier run recorded: its fields (no tensors) and its tensors' lines
  // at `lines` in `from` (EarlierEntries).
  void record(ManifestOutput output, const EntryTexts& from, EntryTexts::Span lines);
  void record(ManifestSideFile side, Rewrite rewrite = Rewrite::now);
  // Rewrites the file with what was recorded.
  void rewrite();
  // Whether the finished entries describe every output and side file of `plan`: the run can
  // complete the folder's manifest from them alone.
  bool covers(const plan::Plan& plan) const;
  // Per output of `plan`: whether the run has no finished entry for it.
  std::vector<bool> outputs_missing(const plan::Plan& plan) const;
  // Writes the folder's complete manifest of `plan` from the finished entries, then for the
  // outputs the run has none of `earlier`'s entries and for the side files it has not recorded
  // `side_files` (the caller checked that every one is there), as write_manifest would with
  // their objects (`writer` as there). Returns what it wrote, without the tensors.
  Manifest write_complete(const plan::Plan& plan, const std::string& writer,
                          const EarlierEntries* earlier = nullptr,
                          const std::vector<ManifestSideFile>& side_files = {}) const;
  // The finished entries so far, as a complete manifest of the same plan would hold them, without
  // their tensors.
  Manifest finished() const;
  const std::string& path() const noexcept { return path_; }

 private:
  // Holds `output` (finished, its text at `text`) in place of a planned entry, and rewrites the file.
  void keep(ManifestOutput&& output, EntryTexts::Span text);
  void write(AtomicFile& file, const Manifest& manifest,
             std::span<const EarlierEntries::Entry* const> from_earlier = {},
             const EarlierEntries* earlier = nullptr) const;

  std::string folder_;
  std::string path_;
  std::string temp_;
  EntryTexts texts_;
  Manifest manifest_;                                // the outputs' tensors are in texts_
  std::map<std::string, EntryTexts::Span> written_;  // each finished output's text, by file
  mutable std::mutex mutex_;
};

// A fragment read back, with the file name it was read from.
struct Fragment {
  std::string name;
  Manifest content;
};

// Every fragment in `folder` that is a valid manifest, by name, without the tensors of its entries
// (EarlierEntries reads those). A fragment is evidence, never required: one that cannot be read is
// skipped (its files are simply written again).
std::vector<Fragment> read_fragments(const std::string& folder);
// The names of the fragments in `folder`, sorted.
std::vector<std::string> fragment_names(const std::string& folder);

}  // namespace shardwise::output
