#pragma once
// The flags of a run that writes a folder of rank files (output::RunOptions), which `convert` and
// `reshard` share: declared once, read once.

#include <cstdint>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include <shardwise/output/page_cache.hpp>
#include <shardwise/output/run_options.hpp>

namespace shardwise::cli {

struct RunArgs {
  unsigned threads = 0;
  bool quiet = false;
  bool force = false;
  bool resume = false;
  std::optional<std::string> ranks;
  bool distributed = false;
  unsigned manifest_wait = 0;
  output::PageCache page_cache = output::PageCache::automatic;
};

// The help texts that differ between the commands.
struct RunHelp {
  const char* threads;
  const char* resume;
  const char* ranks;
  const char* page_cache;
};

// Declares -t/--threads, -q/--quiet, -f/--force, --resume, --ranks, --distributed (not with
// --ranks), --manifest-wait and --page-cache.
void add_run_options(CLI::App& command, RunArgs& args, const RunHelp& help);

// The run the flags ask for, writing into `output_dir`. Throws Error(usage) before anything is
// read: --ranks not below `model_parallel`, --distributed without a launcher's variables.
output::RunOptions run_options_of(const RunArgs& args, const std::string& output_dir,
                                  std::uint64_t model_parallel);

}  // namespace shardwise::cli
