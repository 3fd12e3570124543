#pragma once
// Comparing a shardwise-manifest.json with what is on disk (and, given a plan, with the plan).
// Internal to verify.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <shardwise/output/manifest.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/safetensors/header.hpp>

#include "verify/findings.hpp"

namespace shardwise::verify {

// An output file as read: its size and checksums.
struct ScannedOutput {
  std::uint64_t size = 0;
  std::uint64_t whole = 0;
  // Each tensor's name and XXH3, sorted by name (a header's order): a vector rather than a map,
  // as a full-size model has 100,000s. The names are views of those of the header or the plan, which outlive
  // this.
  std::vector<std::pair<std::string_view, std::uint64_t>> tensors;
  // The XXH3 of the tensor `name`; nullptr when the file has none of that name.
  const std::uint64_t* find(std::string_view name) const;
  // Adds the tensors of a header, in its order, with their digests.
  void add_tensors(std::span<const st::TensorInfo> header, const std::vector<std::uint64_t>& digests);
  // Sorts `tensors` by name, when they are not already.
  void sort();
};

// What verification read from the output folder. Files that are missing or not valid
// safetensors are absent (they were reported when found so).
struct DiskState {
  std::map<std::string, ScannedOutput> outputs;
  std::map<std::string, std::uint64_t> side_files;  // XXH3-64 of each side file read
};

enum class ManifestRole {
  sole_reference,  // `--manifest-only`: every difference from the manifest is a mismatch
  cross_check,     // beside a plan: only what the plan's checks did not already report
};

// Sizes, whole-file, per-tensor and side-file checksums of a complete manifest against `disk`, as
// the manifest is read, a tensor at a time (output::TensorVisitor): what is kept is a mark per
// tensor found on disk and the tensors that differ, never the manifest's entries. Findings are
// made only by finish(): per output entry its tensors in the manifest's order, those on disk it
// does not list, its size and whole-file checksum; then the side files.
class StreamedComparison {
 public:
  StreamedComparison(const DiskState& disk, ManifestRole role) : disk_(disk), role_(role) {}

  output::TensorVisitor visitor();
  // The tensors an output entry listed, by entry (for messages).
  std::size_t listed(std::size_t output) const;
  // What compare_manifest reports for `manifest` (read with visitor(), complete).
  void finish(const output::Manifest& manifest, Findings& findings) const;

 private:
  // A listed tensor missing on disk (digest nullopt) or with other bytes.
  struct Difference {
    std::string name;
    std::uint64_t expected = 0;
    std::optional<std::uint64_t> found;
  };
  struct Entry {
    const ScannedOutput* found = nullptr;  // nullptr: not read from disk
    std::size_t listed = 0;
    std::vector<bool> seen;  // per tensor of `found`: listed
    std::vector<Difference> differences;
  };
  void add(std::size_t output, const std::string& file, output::ManifestTensor&& tensor);

  const DiskState& disk_;
  ManifestRole role_;
  std::vector<Entry> entries_;  // by output entry
};

// Whether the manifest describes a conversion of `plan` with these rules and this input: its
// completeness, rules, parameters, input headers, output and side files.
void compare_manifest_with_plan(const output::Manifest& manifest, const plan::Plan& plan,
                                const output::RulesIdentity& rules, std::uint64_t headers_xxh3,
                                Findings& findings);

// How the input files differ from the manifest's record of them (what the conversion planned and
// found unchanged at its end), one line per file: "model.safetensors changed since the conversion:
// modified (mtime ...)". Not mismatches by themselves: verification compares the bytes, and a
// copied or touched checkpoint holds the same ones; they explain mismatches found there. A
// version 1 manifest has no record: one line says so.
std::vector<std::string> input_changes(const output::Manifest& manifest, const plan::Plan& plan);

}  // namespace shardwise::verify
