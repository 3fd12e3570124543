#include "cli/run_options.hpp"

#include <chrono>

#include <shardwise/output/work_share.hpp>

#include "cli/page_cache_option.hpp"

namespace shardwise::cli {

void add_run_options(CLI::App& command, RunArgs& args, const RunHelp& help) {
  command.add_option("-t,--threads", args.threads, help.threads)->check(CLI::Range(1u, 1024u));
  command.add_flag("-q,--quiet", args.quiet, "no progress and no summary on stderr");
  command.add_flag("-f,--force", args.force,
                   "overwrite files in the output folder that shardwise did not write");
  command.add_flag("--resume", args.resume, help.resume);
  CLI::Option* ranks = command.add_option("--ranks", args.ranks, help.ranks);
  command
      .add_flag(
          "--distributed", args.distributed,
          "write this process's share of the files, from the launcher's variables (mpirun, srun, torchrun)")
      ->excludes(ranks);
  command
      .add_option(
          "--manifest-wait", args.manifest_wait,
          "with --distributed: seconds process 0 waits for the others to complete the manifest (default: "
          "10 minutes or twice its own time, whichever is longer)")
      ->check(CLI::Range(1u, 1000000u));
  add_page_cache_option(command, args.page_cache, help.page_cache);
}

output::RunOptions run_options_of(const RunArgs& args, const std::string& output_dir,
                                  std::uint64_t model_parallel) {
  output::RunOptions run;
  if (args.ranks) run.ranks = output::parse_rank_list(*args.ranks, model_parallel);
  if (args.distributed) run.launch = output::launch_from_environment();
  run.output_dir = output_dir;
  run.threads = args.threads;
  run.progress = args.quiet ? output::ProgressMode::quiet : output::ProgressMode::automatic;
  run.overwrite = args.force ? output::Overwrite::force : output::Overwrite::refuse_foreign;
  run.resume = args.resume ? output::Resume::keep_finished : output::Resume::no;
  run.manifest_wait = std::chrono::seconds(args.manifest_wait);
  run.page_cache = args.page_cache;
  return run;
}

}  // namespace shardwise::cli
