#pragma once
// What an output folder says about the runs that wrote into it: its manifest and the fragments of
// partial runs not yet folded into it. Resuming reads it to find files worth keeping; runs writing parts
// of one output read it to complete the manifest. Internal to output.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/output/manifest.hpp>
#include <shardwise/plan/plan.hpp>

#include "output/run_manifest.hpp"

namespace shardwise::output {

struct Evidence {
  std::optional<Manifest> manifest;  // a valid manifest, complete or not
  std::vector<Fragment> fragments;   // every readable fragment, of any plan
};

// Reads both; an invalid manifest counts as none (it proves nothing).
Evidence read_evidence(const std::string& folder);

// Throws Error(io) "cannot resume: <each change>" when the manifest (or, without one, a fragment)
// describes another plan than `now` (the manifest of `plan`, whose words name choice values).
void check_resumable(const Evidence& evidence, const Manifest& now, const plan::Plan& plan,
                     const std::string& folder);

// True when `entry` describes `planned`: the same rank, file name and tensor names in order.
bool entry_fits(const ManifestOutput& entry, const plan::OutputFile& planned);

// The manifests whose entries describe the plan `now`: `own` first (when given), then the
// folder's manifest and fragments of the same plan. Only entries with checksums count.
std::vector<const Manifest*> same_plan_sources(const Evidence& evidence, const Manifest& now,
                                               const Manifest* own);

// The first entry with checksums among `sources` that fits `planned`, if any.
const ManifestOutput* find_entry(const std::vector<const Manifest*>& sources,
                                 const plan::OutputFile& planned);

// Where completing the manifest stands after a try.
struct Completion {
  bool written = false;                      // the complete manifest is in the folder
  std::vector<std::uint64_t> missing_ranks;  // ranks no source has an entry for yet
  bool missing_side_files = false;
  Manifest manifest;  // as written (when written)
};

// Completes the manifest of `plan` when the sources (`own`, this run's entries, then the folder's
// evidence) have an entry for every output and side file: writes it (through the temporary named
// by `writer`, see write_manifest), then removes the fragments of this plan, now folded into it.
// Assembling is deterministic, so several processes completing it at once write the same bytes.
Completion complete_manifest(const plan::Plan& plan, const std::string& folder, const Manifest& own,
                             const std::string& writer);
// The same for a run whose own entries `own` keeps as text: when they cover the plan (a whole run,
// or one whose ranks are every rank) the manifest is written from that text, never held as
// objects; otherwise their objects are read back from the run's record for the above (or, when
// that record is gone, completed_from).
Completion complete_manifest(const plan::Plan& plan, const std::string& folder, const RunManifest& own,
                             const std::string& writer);
// For a partial run whose record (its fragment) is gone: another process of the job completed the
// folder's manifest from it (the manifest is renamed into place before the fragments it folds in
// are removed). That manifest, without the tensors, if it is complete, of the same plan and lists
// every file; otherwise Error(io) naming the record.
Completion completed_from(const plan::Plan& plan, const std::string& folder, const RunManifest& own);

}  // namespace shardwise::output
