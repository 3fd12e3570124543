#pragma once
// Resuming: which output files an earlier run of the same plan already wrote completely, so that
// `convert --resume` writes only the rest. Internal to output.

#include <vector>

#include <shardwise/output/file_work.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/output/progress.hpp>

#include "output/earlier_entries.hpp"

namespace shardwise::output {

// Per item of `work`, whether the file is kept: `earlier` found an entry that fits its planned file
// (an earlier run of the same plan recorded it), and the file on disk has the entry's size, which
// is also the planned size, and the entry's whole-file XXH3. Every candidate is read in full, on
// `threads` threads: a file damaged or replaced since its entry was recorded is written again.
std::vector<bool> files_to_keep(const EarlierEntries& earlier, const std::vector<FileWork>& work,
                                unsigned threads, ProgressMode progress);

}  // namespace shardwise::output
