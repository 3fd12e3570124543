// `shardwise reshard`: a folder of rank files written by `shardwise convert` rewritten for another
// model parallelism (or only its plan printed: --dry-run).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string_view>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/reshard/reshard.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"
#include "cli/run_options.hpp"

namespace shardwise::cli {

namespace {

struct ReshardArgs {
  std::string from;
  std::string output;
  std::uint64_t model_parallel = 0;
  bool dry_run = false;
  std::string format = "text";
  PlanViewOptions view;
  RunArgs run;
  PlanningOptions planning;  // --rules and its parameters, for folders without a manifest
};

// The dry run's views, as `plan` prints them (print_plan's rules for --summary).
void print_reshard_plan(const reshard::ReshardPlan& plan, const ReshardArgs& args) {
  if (args.view.summary && args.view.filter.active()) {
    throw Error(ErrorKind::usage,
                "--summary describes the whole plan: it cannot be combined with --rank, --rule or --filter");
  }
  if (args.view.summary && args.format == "json") {
    throw Error(ErrorKind::usage,
                "--summary is for people: it has no JSON form (the JSON plan has the totals)");
  }
  const auto print = [](std::string_view text) {
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size())
      throw Error(ErrorKind::io, "cannot write to standard output");
  };
  if (args.view.summary) {
    print(reshard::format_reshard_summary(plan));
  } else if (args.format == "json") {
    reshard::format_reshard_json(plan, args.view.filter, print);  // in parts, as the text
  } else {
    reshard::format_reshard_text(plan, args.view.filter, print);  // in parts: at Pro's count, 20 MB
  }
  if (std::fflush(stdout) != 0) throw Error(ErrorKind::io, "cannot write to standard output");
}

reshard::ReshardPlan plan_of(const CLI::App& command, const ReshardArgs& args) {
  if (!args.planning.rules_file) {
    const rules::Params params = given_params(command, args.planning.params, rules::Rules::bundled());
    if (!params.empty()) {
      const std::string manifest = (std::filesystem::path(args.from) / output::kManifestFileName).string();
      std::error_code ec;
      throw Error(
          ErrorKind::usage,
          std::filesystem::exists(manifest, ec)
              ? fmt::format("rules parameters are not given without --rules: {} records them", manifest)
              : fmt::format("rules parameters go with --rules: {} has no {}, so name the rules that wrote "
                            "it with --rules, and their parameters (docs/reshard.md)",
                            args.from, output::kManifestFileName));
    }
    // A dry run writes nothing: replicated copies are compared before its plan is printed.
    return reshard::plan_reshard(
        args.from, args.model_parallel,
        args.dry_run ? reshard::CopyCheck::when_planned : reshard::CopyCheck::when_written,
        outside_links(args.planning.allow_outside_links));
  }
  const rules::Rules rules = load_rules(args.planning);
  return reshard::plan_reshard(args.from, args.model_parallel, rules,
                               given_params(command, args.planning.params, rules),
                               outside_links(args.planning.allow_outside_links));
}

int run_reshard(const CLI::App& command, const ReshardArgs& args) {
  // Usage errors first, before the old folder is read.
  reshard::ReshardOptions options;
  options.run = run_options_of(args.run, args.output, args.model_parallel);
  const reshard::ReshardPlan plan = plan_of(command, args);
  if (args.dry_run) {
    print_reshard_plan(plan, args);
    return 0;
  }
  const reshard::ReshardSummary summary = reshard::execute_reshard(plan, options);
  if (!args.run.quiet) fmt::print(stderr, "{}\n", output::format_summary(summary));
  return 0;
}

}  // namespace

void add_reshard_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ReshardArgs>();
  CLI::App* command = app.add_subcommand(
      "reshard",
      "Rewrite a folder that `shardwise convert` wrote for another model parallelism: the same files a "
      "conversion of the original checkpoint at the new mp writes, byte for byte, read from the old rank "
      "files (the original is not needed; the folder's manifest says how every tensor was cut)");
  command->add_option("--from", args->from, "the folder of rank files (with its shardwise-manifest.json)")
      ->required();
  command->add_option("-o,--save-path", args->output, "output folder (created when missing)");
  command->add_option("-m,--model-parallel", args->model_parallel, "the new model parallelism (1: one file)")
      ->required();
  command->add_flag("-n,--dry-run", args->dry_run,
                    "print the plan (every new tensor and the old pieces it is made of) and write nothing");
  command->add_option("--format", args->format, "with --dry-run: text or json")
      ->check(CLI::IsMember({"text", "json"}));
  command->add_option(
      "-r,--rules", args->planning.rules_file,
      "for a folder without a shardwise manifest (a reference converter's): the rules that wrote it (bundled "
      "name or file), which must place every tensor name in its rank files as itself; with their parameters");
  add_param_options(*command, args->planning.params);
  add_outside_links_option(*command, args->planning.allow_outside_links);
  add_run_options(
      *command, args->run,
      {"threads (default: one per hardware thread): files are written in parallel, and with threads to spare "
       "each file's hashing and writing run beside its gathering",
       "keep the output files an earlier run of the same reshard finished (checked on disk); refuse when the "
       "plan changed",
       "write only these new ranks' files, e.g. 1,3 or 0-3,6 (side files go with rank 0)",
       "auto, keep or drop: as for convert, drop new pages once on disk and old pieces once read for the "
       "last "
       "time (auto: when reads and writes exceed half of memory; the bytes written are the same)"});
  command->footer(
      "Every new tensor is gathered from the old rank files: a split dim's ranges concatenated and cut "
      "again, "
      "replicated tensors from one copy (all copies checked equal), owned ones moved to their new owner. A "
      "split "
      "that does not divide, or would cut inside a byte or a cut unit, is refused as convert refuses it. "
      "Rules "
      "parameters with --rules: --NAME VALUE or -p NAME=VALUE. The old pieces a run reads are compared with "
      "the "
      "checksums the old manifest records first. --resume, --ranks and --distributed work as for convert "
      "(docs/distributed.md); with --dry-run, --rule selects a cut (\"split dim 1\", \"owned\", "
      "\"replicated\"). "
      "See docs/reshard.md.");
  add_plan_view_options(*command, args->view);  // appends to the footer
  // The plan's view options, as a reshard's dry run reads them.
  command->get_option("--summary")
      ->description(
          "with --dry-run: the plan at a glance instead: per cut the tensors and bytes, per new rank "
          "file its tensors, bytes and the old files it reads");
  command->get_option("--rank")->description("with --dry-run: only what this new rank receives");
  command->get_option("--rule")->description(
      "with --dry-run: only the tensors cut this way: \"split dim N\", \"owned\" or \"replicated\" "
      "(a reshard selects by cut: the folder does not record the rules that decided)");
  command->get_option("--filter")
      ->description("with --dry-run: only tensors whose name contains a match of this RE2 pattern");
  command->callback([&action, command, args] {
    if (!args->dry_run && args->output.empty()) throw CLI::RequiredError("--save-path");
    if (!args->dry_run && (args->view.summary || args->view.filter.active())) {
      throw CLI::ValidationError("--summary, --rank, --rule and --filter", "only with --dry-run");
    }
    action = [command, args] { return run_reshard(*command, *args); };
  });
}

}  // namespace shardwise::cli
