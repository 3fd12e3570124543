#pragma once
// Resuming: which output files an earlier run of the same plan already wrote completely, so that
// `convert --resume` writes only the rest. Internal to output.

#include <optional>
#include <vector>

#include <shardwise/output/file_work.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/output/progress.hpp>

namespace shardwise::output {

// Per item of `work`, its entry when the file is kept: an entry in `sources` (same plan, see
// same_plan_sources) fits the planned file, and the file on disk has the entry's size, which is
// also the planned size, and the entry's whole-file XXH3. Every candidate is read in full, on
// `threads` threads: a file damaged or replaced since its entry was recorded is written again.
std::vector<std::optional<ManifestOutput>> files_to_keep(const std::vector<const Manifest*>& sources,
                                                         const std::vector<FileWork>& work, unsigned threads,
                                                         ProgressMode progress);

}  // namespace shardwise::output
