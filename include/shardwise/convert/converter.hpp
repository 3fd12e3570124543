#pragma once
// Executing a plan: every output file written at disk speed with bounded memory, through a
// temporary name, checksummed, with a manifest written last.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/convert/manifest.hpp>
#include <shardwise/convert/page_cache.hpp>
#include <shardwise/convert/progress.hpp>
#include <shardwise/convert/work_share.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

// What to do with files in the output folder that the plan would overwrite and that no shardwise
// manifest there lists.
enum class Overwrite { refuse_foreign, force };

// Whether output files an earlier run of the same plan finished are kept (checked on disk: size
// and whole-file XXH3 as the manifest or a fragment records them) or written again.
enum class Resume { no, keep_finished };

struct ConvertOptions {
  std::string output_dir;
  unsigned threads = 0;  // 0: one per hardware thread
  ProgressMode progress = ProgressMode::automatic;
  Overwrite overwrite = Overwrite::refuse_foreign;
  RulesIdentity rules;          // recorded in the manifest
  std::size_t piece_bytes = 0;  // staging buffer per thread; 0: automatic (8 MiB, less with many threads)
  Resume resume = Resume::no;
  PageCache page_cache = PageCache::automatic;

  // A partial run (docs/distributed.md) writes only some output files: those of `ranks`
  // (ascending, each below the plan's model parallel), or, with `launch`, this process's share of
  // the job (ranks_of_process). Side files go with rank 0. Neither set: a whole run.
  std::optional<std::vector<std::uint64_t>> ranks;
  std::optional<Launch> launch;
  // How long process 0 of a distributed job waits for the others to finish so that the manifest
  // is complete when it returns; 0: the longer of 10 minutes and twice its own conversion time.
  std::chrono::seconds manifest_wait{0};
};

struct ConvertSummary {
  std::vector<std::uint64_t> ranks;  // the ranks this run was to write
  bool whole = true;                 // a whole run (every rank)
  std::size_t kept = 0;              // output files kept from an earlier run (Resume::keep_finished)
  std::size_t files = 0;             // output files written, side files excluded
  std::size_t tensors = 0;
  std::size_t side_files = 0;
  std::uint64_t bytes = 0;  // every byte written: output files (headers included) and side files
  double seconds = 0;
  unsigned threads = 0;
  bool manifest_complete = false;          // the complete manifest is in the folder
  std::vector<std::uint64_t> waiting_for;  // otherwise: ranks whose files no run has reported yet
  Manifest manifest;                       // as written, when complete; else this run's finished entries
};

// Writes the output files of `plan` (all, or a partial run's) and its side files into
// options.output_dir, recording each file's checksums in the manifest (or the run's fragment) as
// it lands, then completes the manifest once every file of the plan is known to be written. The
// folder is checked first (see Overwrite; never the input folder or inside it) and temporaries of
// an earlier killed run are removed. With Resume::keep_finished, throws Error(io) "cannot resume:
// ..." when the folder's manifest describes another plan. Installs the SIGINT/SIGTERM cleanup
// handlers; on interruption throws Error(interrupted), on any failure Error(io/input) naming the
// path. In every case no temporary is left and no final-named file is incomplete. The bytes
// written do not depend on the thread count, nor on how the files are split between runs.
ConvertSummary convert_plan(const plan::Plan& plan, const ConvertOptions& options);

// "wrote 8 files (1234 tensors) and 2 side files: 3.52 GB in 2.1 s (1.68 GB/s, 8 threads)", then
// what was kept, and for a partial run which ranks it wrote and whether the manifest is complete.
std::string format_summary(const ConvertSummary& summary);

}  // namespace shardwise::convert
