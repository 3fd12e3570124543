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

#include "output/earlier_entries.hpp"
#include "output/run_manifest.hpp"

namespace shardwise::output {

struct Evidence {
  std::optional<Manifest> manifest;  // a valid manifest, complete or not
  std::vector<Fragment> fragments;   // every readable fragment, of any plan
};

// Reads both, without their entries' tensors (EarlierEntries reads those where they are needed);
// an invalid manifest counts as none (it proves nothing).
Evidence read_evidence(const std::string& folder);

// Throws Error(io) "cannot resume: <each change>" when the manifest (or, without one, a fragment)
// describes another plan than `now` (the manifest of `plan`, whose words name choice values).
void check_resumable(const Evidence& evidence, const Manifest& now, const plan::Plan& plan,
                     const std::string& folder);

// Reads into `earlier` the records of the plan `now` that `evidence` found: the folder's manifest,
// then the fragments in name order (a record that cannot be read again proves nothing).
void read_earlier_entries(EarlierEntries& earlier, const std::string& folder, const Evidence& evidence,
                          const Manifest& now);

// Where completing the manifest stands after a try.
struct Completion {
  bool written = false;                      // the complete manifest is in the folder
  std::vector<std::uint64_t> missing_ranks;  // ranks no record has an entry for yet
  bool missing_side_files = false;
  Manifest manifest;  // as written (when written), without the tensors
};

// Completes the folder's manifest of `plan` when this run's finished entries (`own`), then the
// folder's manifest's and the fragments' of the same plan, have an entry for every output and side
// file: writes it (through the temporary named by `writer`, see write_manifest), then removes the
// fragments of this plan, now folded into it. Assembling is deterministic, so several processes
// completing it at once write the same bytes. The entries are copied as text (the run's store,
// EarlierEntries, `list_of` as there), never held as objects.
Completion complete_manifest(const plan::Plan& plan, const std::string& folder, const RunManifest& own,
                             const std::string& writer, const EarlierEntries::ListOf& list_of = {});

}  // namespace shardwise::output
