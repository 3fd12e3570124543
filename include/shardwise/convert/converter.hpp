#pragma once
// Executing a plan: every output file written at disk speed with bounded memory, through a
// temporary name, checksummed, with a manifest written last.

#include <cstddef>
#include <cstdint>
#include <string>

#include <shardwise/convert/manifest.hpp>
#include <shardwise/convert/progress.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

// What to do with files in the output folder that the plan would overwrite and that no shardwise
// manifest there lists.
enum class Overwrite { refuse_foreign, force };

struct ConvertOptions {
  std::string output_dir;
  unsigned threads = 0;  // 0: one per hardware thread
  ProgressMode progress = ProgressMode::automatic;
  Overwrite overwrite = Overwrite::refuse_foreign;
  RulesIdentity rules;          // recorded in the manifest
  std::size_t piece_bytes = 0;  // staging buffer per thread; 0: automatic (8 MiB, less with many threads)
};

struct ConvertSummary {
  std::size_t files = 0;       // output files, side files excluded
  std::size_t tensors = 0;
  std::size_t side_files = 0;
  std::uint64_t bytes = 0;     // every byte written: output files (headers included) and side files
  double seconds = 0;
  unsigned threads = 0;
  Manifest manifest;           // as written
};

// Writes every output file of `plan` and its side files into options.output_dir, then the
// manifest. The folder is checked first (see Overwrite; never the input folder or inside it) and
// temporaries of an earlier killed run are removed. Installs the SIGINT/SIGTERM cleanup handlers;
// on interruption throws Error(interrupted), on any failure Error(io/input) naming the path. In
// every case no temporary is left and no final-named file is incomplete. The bytes written do
// not depend on the thread count.
ConvertSummary convert_plan(const plan::Plan& plan, const ConvertOptions& options);

// "wrote 8 files (1234 tensors) and 2 side files, 3.52 GB in 2.1 s (1.68 GB/s)".
std::string format_summary(const ConvertSummary& summary);

}  // namespace shardwise::convert
