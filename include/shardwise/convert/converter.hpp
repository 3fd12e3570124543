#pragma once
// Executing a plan: every output file written at disk speed with bounded memory, through a
// temporary name, checksummed, with a manifest written last.

#include <cstddef>

#include <shardwise/output/manifest.hpp>
#include <shardwise/output/run_options.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

struct ConvertOptions {
  output::RunOptions run;       // the output folder, threads, --resume, --ranks, --distributed, ...
  output::RulesIdentity rules;  // recorded in the manifest
  std::size_t piece_bytes = 0;  // staging buffer per thread; 0: automatic (8 MiB, less with many threads)
};

// What a run wrote.
using ConvertSummary = output::RunSummary;

// Writes the output files of `plan` (all, or a partial run's) and its side files into
// options.run.output_dir, recording each file's checksums in the manifest (or the run's fragment) as
// it lands, then completes the manifest once every file of the plan is known to be written. The
// folder is checked first (see Overwrite; never the input folder or inside it) and temporaries of
// an earlier killed run are removed. With Resume::keep_finished, throws Error(io) "cannot resume:
// ..." when the folder's manifest describes another plan. Installs the SIGINT/SIGTERM cleanup
// handlers; on interruption throws Error(interrupted), on any failure Error(io/input) naming the
// path. In every case no temporary is left and no final-named file is incomplete. The bytes
// written do not depend on the thread count, nor on how the files are split between runs.
ConvertSummary convert_plan(const plan::Plan& plan, const ConvertOptions& options);

}  // namespace shardwise::convert
