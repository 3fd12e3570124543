// `shardwise diff OLD.json NEW.json`: which source tensors two plans (`plan --format json`) place
// differently. Exits 0 when they place every tensor the same way, 1 when they differ, 2 and above
// on errors, as diff(1) does.
#include <cerrno>
#include <cstdio>
#include <memory>
#include <string_view>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan_diff.hpp>

#include "cli/commands.hpp"

namespace shardwise::cli {

namespace {

struct DiffArgs {
  std::string old_plan;
  std::string new_plan;
  std::string format = "text";
};

int run_diff(const DiffArgs& args) {
  const plan::PlanDiff diff = plan::diff_plan_files(args.old_plan, args.new_plan);
  // Written as the rows are made: a diff of two full-size plans is 12-23 MB of text.
  const plan::DiffSink to_stdout = [](std::string_view piece) {
    if (std::fwrite(piece.data(), 1, piece.size(), stdout) != piece.size())
      throw_os_error("cannot write the diff to", "standard output", errno);
  };
  if (args.format == "json")
    plan::write_plan_diff_json(diff, to_stdout);
  else
    plan::write_plan_diff_text(diff, to_stdout);
  if (std::fflush(stdout) != 0) throw_os_error("cannot write the diff to", "standard output", errno);
  return diff.differ() ? kPlansDiffer : 0;
}

}  // namespace

void add_diff_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<DiffArgs>();
  CLI::App* command = app.add_subcommand("diff",
                                         "Compare two plans written by `shardwise plan --format json` (e.g. "
                                         "before and after editing the rules): one\n"
                                         "row per source tensor placed differently (output name, ranks, "
                                         "slices, dtype, shape, cast, any other field\n"
                                         "of the plan's tensors, skipped or not) with old -> new, the "
                                         "tensors only one plan has, then the counts.\n"
                                         "The deciding rule's label and a skip's reason are not compared (a "
                                         "rule's line moves with every edit above\n"
                                         "it). Exit 0 when the plans place every tensor the same way, 1 when "
                                         "they differ, 2 and above on errors (4:\n"
                                         "a file that is not a plan).");
  command->add_option("OLD", args->old_plan, "the plan before (JSON)")->required();
  command->add_option("NEW", args->new_plan, "the plan after (JSON)")->required();
  command
      ->add_option("--format", args->format,
                   "text: rows for people; json: one object for programs (docs/plan.md)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  command->callback([&action, args] { action = [args] { return run_diff(*args); }; });
}

}  // namespace shardwise::cli
