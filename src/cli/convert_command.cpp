// `shardwise convert`: plan the checkpoint, then execute the plan (or only print it: --dry-run),
// whole or in part (--ranks, --distributed), resuming an earlier run (--resume).
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include <shardwise/convert/checksum.hpp>
#include <shardwise/convert/converter.hpp>
#include <shardwise/convert/work_share.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"
#include "cli/page_cache_option.hpp"

namespace shardwise::cli {

namespace {

struct ConvertArgs {
  PlanningOptions planning;
  PlanViewOptions view;
  std::string output;
  unsigned threads = 0;
  bool quiet = false;
  bool force = false;
  bool dry_run = false;
  bool resume = false;
  std::optional<std::string> ranks;
  bool distributed = false;
  unsigned manifest_wait = 0;
  convert::PageCache page_cache = convert::PageCache::automatic;
};

int run_convert(const CLI::App& command, const ConvertArgs& args) {
  // Usage errors first, before the checkpoint is read.
  std::optional<std::vector<std::uint64_t>> ranks;
  // Without --model-parallel (rules that mirror the input), the ranks are output files, checked
  // against their count once planned.
  if (args.ranks)
    ranks = convert::parse_rank_list(*args.ranks, args.planning.model_parallel.value_or(plan::kMaxModelParallel));
  std::optional<convert::Launch> launch;
  if (args.distributed) launch = convert::launch_from_environment();
  const Planned planned =
      plan_from_options(command, args.planning, args.quiet ? RulesNotice::quiet : RulesNotice::print);
  const rules::Rules& rules = planned.rules;
  const plan::Plan& plan = planned.plan;
  if (args.dry_run) {
    print_plan(plan, args.planning, args.view);
    return 0;
  }
  convert::ConvertOptions options;
  options.output_dir = args.output;
  options.threads = args.threads;
  options.progress = args.quiet ? convert::ProgressMode::quiet : convert::ProgressMode::automatic;
  options.overwrite = args.force ? convert::Overwrite::force : convert::Overwrite::refuse_foreign;
  options.rules = {rules.name(), convert::xxh3(rules.text()), rules.output_file_pattern(), rules.text()};
  options.resume = args.resume ? convert::Resume::keep_finished : convert::Resume::no;
  options.ranks = ranks;
  options.launch = launch;
  options.manifest_wait = std::chrono::seconds(args.manifest_wait);
  options.page_cache = args.page_cache;
  const convert::ConvertSummary summary = convert::convert_plan(plan, options);
  if (!args.quiet) fmt::print(stderr, "{}\n", convert::format_summary(summary));
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* command =
      app.add_subcommand("convert", "Convert a checkpoint: write one file per rank, then a manifest");
  add_planning_options(*command, args->planning);
  command->add_option("-o,--save-path,--output-bf16-hf-path", args->output, "output folder (created when missing)");
  command->add_option("-t,--threads", args->threads, "copy threads (default: one per hardware thread)")
      ->check(CLI::Range(1u, 1024u));
  command->add_flag("-q,--quiet", args->quiet, "no progress and no summary on stderr");
  command->add_flag("-f,--force", args->force,
                    "overwrite files in the output folder that shardwise did not write");
  command->add_flag("-n,--dry-run", args->dry_run,
                    "print the plan (as `shardwise plan` does) and write nothing");
  command->add_flag(
      "--resume", args->resume,
      "keep the output files an earlier run of the same plan finished (checked on disk); refuse "
      "when the plan changed");
  CLI::Option* ranks =
      command->add_option("--ranks", args->ranks,
                          "write only these ranks' files, e.g. 1,3 or 0-3,6 (side files go with "
                          "rank 0)");
  command
      ->add_flag(
          "--distributed", args->distributed,
          "write this process's share of the files, from the launcher's variables (mpirun, srun, torchrun)")
      ->excludes(ranks);
  command
      ->add_option(
          "--manifest-wait", args->manifest_wait,
          "with --distributed: seconds process 0 waits for the others to complete the manifest (default: "
          "10 minutes or twice its own time, whichever is longer)")
      ->check(CLI::Range(1u, 1000000u));
  add_page_cache_option(*command, args->page_cache,
                        "auto, keep or drop: drop output pages once on disk and input pages once read for the "
                        "last time, so that a checkpoint larger than memory streams at disk speed (auto: drop "
                        "when reads and writes exceed half of memory; the bytes written are the same)");
  add_format_option(*command, args->planning);
  add_plan_view_options(*command, args->view);
  command->callback([&action, command, args] {
    if (!args->dry_run && args->output.empty()) {
      throw CLI::RequiredError("--save-path");
    }
    if (!args->dry_run && (args->view.summary || args->view.filter.active())) {
      throw CLI::ValidationError("--summary, --rank, --rule and --filter", "only with --dry-run");
    }
    action = [command, args] { return run_convert(*command, *args); };
  });
}

}  // namespace shardwise::cli
