// `shardwise convert`: plan the checkpoint, then execute the plan (or only print it: --dry-run),
// whole or in part (--ranks, --distributed), resuming an earlier run (--resume).
#include <algorithm>
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/convert/converter.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/reshard/reverse.hpp>
#include <shardwise/safetensors/hf_shards.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"
#include "cli/run_options.hpp"

namespace shardwise::cli {

namespace {

struct ConvertArgs {
  PlanningOptions planning;
  PlanViewOptions view;
  std::string output;
  bool dry_run = false;
  RunArgs run;
  bool reverse = false;  // --reverse: -i is a converted folder (docs/reverse.md)
};

// `convert --reverse -i CONVERTED -o ORIGINAL`: everything comes from the folder's manifest, so the
// options that choose a plan are usage errors here, as are those of a run in parts.
int run_reverse(const ConvertArgs& args) {
  std::vector<std::string> refused;
  if (args.planning.model_parallel) refused.emplace_back("--model-parallel");
  if (args.planning.rules_file) refused.emplace_back("--rules");
  const bool flags = std::any_of(args.planning.params.flags.begin(), args.planning.params.flags.end(),
                                 [](const auto& flag) { return flag.second.has_value(); });
  if (!args.planning.params.entries.empty() || flags) refused.emplace_back("rules parameters");
  if (args.run.resume) refused.emplace_back("--resume");
  if (args.run.ranks) refused.emplace_back("--ranks");
  if (args.run.distributed) refused.emplace_back("--distributed");
  if (args.planning.mirror) refused.emplace_back("--mirror");
  if (!refused.empty()) {
    throw Error(
        ErrorKind::usage,
        fmt::format("convert --reverse takes the rules, their parameters and the model parallelism from "
                    "the folder's manifest: {} cannot be given with it",
                    fmt::join(refused, ", ")));
  }
  const std::uint64_t max_shard = args.planning.max_shard_size
                                      ? st::parse_max_shard_size(*args.planning.max_shard_size)
                                      : st::kDefaultMaxShardSize;
  const reshard::ReversePlan plan =
      reshard::plan_reverse(args.planning.input, max_shard, outside_links(args.planning.allow_outside_links));
  if (args.dry_run) {
    fmt::print("{}", reshard::format_reverse_text(plan));
    return 0;
  }
  const reshard::ReverseSummary summary =
      reshard::execute_reverse(plan, {.output_dir = args.output, .force = args.run.force});
  if (!args.run.quiet) {
    fmt::print(stderr, "reversed {} tensors into {} file{} ({} bytes) in {}\n", summary.tensors,
               summary.files, summary.files == 1 ? "" : "s", summary.bytes, args.output);
  }
  return 0;
}

int run_convert(const CLI::App& command, const ConvertArgs& args) {
  // Usage errors first, before the checkpoint is read. Without --model-parallel (rules that mirror
  // the input), the ranks are output files, checked against their count once planned.
  convert::ConvertOptions options;
  options.run =
      run_options_of(args.run, args.output, args.planning.model_parallel.value_or(plan::kMaxModelParallel));
  const Planned planned =
      plan_from_options(command, args.planning, args.run.quiet ? RulesNotice::quiet : RulesNotice::print);
  const rules::Rules& rules = planned.rules;
  const plan::Plan& plan = planned.plan;
  if (args.dry_run) {
    print_plan(plan, args.planning, args.view);
    return 0;
  }
  options.rules = {rules.name(), output::xxh3(rules.text()), rules.output_file_pattern(), rules.text()};
  const convert::ConvertSummary summary = convert::convert_plan(plan, options);
  if (!args.run.quiet) fmt::print(stderr, "{}\n", output::format_summary(summary));
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* command =
      app.add_subcommand("convert", "Convert a checkpoint: write one file per rank, then a manifest");
  add_planning_options(*command, args->planning);
  command->add_option("-o,--save-path,--output-bf16-hf-path", args->output,
                      "output folder (created when missing)");
  command->add_flag("-n,--dry-run", args->dry_run,
                    "print the plan (as `shardwise plan` does) and write nothing");
  add_run_options(
      *command, args->run,
      {"copy threads (default: one per hardware thread)",
       "keep the output files an earlier run of the same plan finished (checked on disk); refuse when the "
       "plan "
       "changed",
       "write only these ranks' files, e.g. 1,3 or 0-3,6 (side files go with rank 0)",
       "auto, keep or drop: drop output pages once on disk and input pages once read for the last time, so "
       "that a "
       "checkpoint larger than memory streams at disk speed (auto: drop when reads and writes exceed half of "
       "memory; the bytes written are the same)"});
  add_format_option(*command, args->planning);
  add_plan_view_options(*command, args->view);
  command->add_flag(
      "--reverse", args->reverse,
      "undo a conversion: -i is a folder shardwise converted, and the original checkpoint's tensors "
      "are written back into -o in Hugging Face's layout (docs/reverse.md)");
  command->callback([&action, command, args] {
    if (args->reverse) {
      if (!args->dry_run && args->output.empty()) throw CLI::RequiredError("--save-path");
      if (args->view.summary || args->view.filter.active() || args->planning.format != "text")
        throw CLI::ValidationError("--summary, --rank, --rule, --filter and --format", "not with --reverse");
      action = [args] { return run_reverse(*args); };
      return;
    }
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
