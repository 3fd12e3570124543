// `shardwise plan`: read the input's headers (never tensor data), apply the rules, print where
// every tensor goes, as text for people or JSON for programs (docs/plan-json.md).
#include <cstdio>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"

namespace shardwise::cli {

namespace {

struct PlanArgs {
  PlanningOptions planning;
  PlanViewOptions view;
};

int run_plan(const CLI::App& command, const PlanArgs& args) {
  // The process ends right after printing: freeing 100,000s of small strings would take longer
  // than printing them (compilers skip it the same way). Kept reachable so leak checkers agree.
  static const Planned* kept = nullptr;
  kept = new Planned(plan_from_options(command, args.planning));
  print_plan(kept->plan, args.planning, args.view);
  return 0;
}

}  // namespace

void add_plan_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* command = app.add_subcommand(
      "plan",
      "Print where every tensor of a checkpoint goes, from its headers alone: an aligned table with one row "
      "per\n"
      "source tensor (its output name, `=` when unchanged; dtype and shape read; the ranks it is written to, "
      "`all`\n"
      "for every rank; the slice each rank takes, e.g. `dim1 8x512` for dim 1 cut in 8 pieces of 512; dtype, "
      "shape\n"
      "and bytes written per rank; the deciding rule), the skipped tensors with their rule and reason, where "
      "each\n"
      "rule is written, then one line per output file and the totals. --summary shows the plan at a glance\n"
      "instead. Every problem (unmatched tensors, incomplete packed groups, splits that cut a packing unit, "
      "owner\n"
      "indices out of range, name clashes) is reported in one run (exit 4). `convert --dry-run` prints the "
      "same\n"
      "plan; `shardwise diff` compares two JSON plans.");
  add_planning_options(*command, args->planning);
  add_format_option(*command, args->planning);
  add_plan_view_options(*command, args->view);
  command->callback(
      [&action, command, args] { action = [command, args] { return run_plan(*command, *args); }; });
}

}  // namespace shardwise::cli
