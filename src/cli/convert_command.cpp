// `shardwise convert`: plan the checkpoint, then execute the plan (or only print it: --dry-run).
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include <shardwise/convert/checksum.hpp>
#include <shardwise/convert/converter.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"

namespace shardwise::cli {

namespace {

struct ConvertArgs {
  PlanningOptions planning;
  std::string output;
  unsigned threads = 0;
  bool quiet = false;
  bool force = false;
  bool dry_run = false;
};

int run_convert(const CLI::App& command, const ConvertArgs& args) {
  const rules::Rules rules = load_rules(args.planning);
  const plan::Plan plan = plan_from_options(command, args.planning, rules);
  if (args.dry_run) {
    std::fputs(render_plan(plan, args.planning, std::nullopt).c_str(), stdout);
    return 0;
  }
  convert::ConvertOptions options;
  options.output_dir = args.output;
  options.threads = args.threads;
  options.progress = args.quiet ? convert::ProgressMode::quiet : convert::ProgressMode::automatic;
  options.overwrite = args.force ? convert::Overwrite::force : convert::Overwrite::refuse_foreign;
  options.rules = {rules.name(), convert::xxh3(rules.text())};
  const convert::ConvertSummary summary = convert::convert_plan(plan, options);
  if (!args.quiet) fmt::print(stderr, "{}\n", convert::format_summary(summary));
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* command = app.add_subcommand("convert", "Convert a checkpoint: write one file per rank, then a manifest");
  add_planning_options(*command, args->planning);
  command->add_option("-o,--save-path", args->output, "output folder (created when missing)");
  command->add_option("-t,--threads", args->threads, "copy threads (default: one per hardware thread)")
      ->check(CLI::Range(1u, 1024u));
  command->add_flag("-q,--quiet", args->quiet, "no progress and no summary on stderr");
  command->add_flag("-f,--force", args->force, "overwrite files in the output folder that shardwise did not write");
  command->add_flag("-n,--dry-run", args->dry_run, "print the plan (as `shardwise plan` does) and write nothing");
  add_format_option(*command, args->planning);
  command->callback([&action, command, args] {
    if (!args->dry_run && args->output.empty()) {
      throw CLI::RequiredError("--save-path");
    }
    action = [command, args] { return run_convert(*command, *args); };
  });
}

}  // namespace shardwise::cli
