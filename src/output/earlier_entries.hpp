#pragma once
// The entries earlier runs recorded for planned output files (in the folder's manifest and the
// fragments of partial runs), found by reading each record a tensor at a time: what is kept of an
// entry is its fields and its tensors' lines as text, in a store without a name (EntryTexts),
// never the tensors as objects (a full-size model's take 100s of MB). Resuming keeps files by
// them; a partial run completes the folder's manifest with them. Internal to output.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/output/manifest.hpp>
#include <shardwise/plan/plan.hpp>

#include "output/entry_texts.hpp"

namespace shardwise::output {

class EarlierEntries {
 public:
  // An entry that fits its planned file: the same rank, file name and tensor names in order, with
  // its checksums.
  struct Entry {
    ManifestOutput fields;   // without tensors
    EntryTexts::Span lines;  // its tensors' lines in store()
  };

  // Output `index` of the plan with its tensor list, for a plan whose outputs do not list them.
  using ListOf = std::function<plan::OutputFile(std::uint64_t index)>;

  // Looks for entries of the outputs of `plan` whose index has `wanted` set; their tensors are
  // compared with plan.outputs[i].tensors, or when `list_of` is set with its list (made for one
  // entry at a time). The store is created in `folder` (Error(io) naming it).
  EarlierEntries(const std::string& folder, const plan::Plan& plan, std::vector<bool> wanted,
                 ListOf list_of = {});

  // Reads the record at `path` (manifest format) and, when it describes the plan `now` (no
  // plan_changes), keeps each of its entries that fits a wanted output no record read before gave.
  // Returns the record's fields (no output lists tensors), or nullopt when there is no file;
  // Error(input) when it is not a valid manifest.
  std::optional<Manifest> read(const std::string& path, const Manifest& now);

  // The entry found for plan output `index`, if any.
  const std::optional<Entry>& found(std::size_t index) const { return found_[index]; }
  const EntryTexts& store() const noexcept { return store_; }

 private:
  const plan::Plan& plan_;
  std::vector<bool> wanted_;
  ListOf list_of_;
  std::vector<std::optional<Entry>> found_;
  EntryTexts store_;
};

}  // namespace shardwise::output
