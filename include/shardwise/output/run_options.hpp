#pragma once
// What a run that writes a folder of rank files is asked to do, and what it reports: the options
// and the summary that `convert` and `reshard` share (output_run.hpp runs it).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/output/manifest.hpp>
#include <shardwise/output/page_cache.hpp>
#include <shardwise/output/progress.hpp>
#include <shardwise/output/work_share.hpp>

namespace shardwise::output {

// What to do with files in the output folder that the plan would overwrite and that no shardwise
// manifest there lists.
enum class Overwrite { refuse_foreign, force };

// Whether output files an earlier run of the same plan finished are kept (checked on disk: size
// and whole-file XXH3 as the manifest or a fragment records them) or written again.
enum class Resume { no, keep_finished };

struct RunOptions {
  std::string output_dir;
  unsigned threads = 0;  // 0: one per hardware thread
  ProgressMode progress = ProgressMode::automatic;
  Overwrite overwrite = Overwrite::refuse_foreign;
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

struct RunSummary {
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
  // As written, when complete; else this run's finished entries. Without the tensors' entries
  // (they are in the file: at 100,000s of tensors, 10s of MB as objects).
  Manifest manifest;
};

// "wrote 8 files (1234 tensors) and 2 side files: 3.52 GB in 2.1 s (1.68 GB/s, 8 threads)", then
// what was kept, and for a partial run which ranks it wrote and whether the manifest is complete.
std::string format_summary(const RunSummary& summary);

}  // namespace shardwise::output
