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
  std::optional<std::string> filter;
};

int run_plan(const CLI::App& command, const PlanArgs& args) {
  const rules::Rules rules = load_rules(args.planning);
  // The process ends right after printing: freeing 100,000s of small strings would take longer
  // than printing them (compilers skip it the same way). Kept reachable so leak checkers agree.
  static const plan::Plan* kept = nullptr;
  kept = new plan::Plan(plan_from_options(command, args.planning, rules));
  print_plan(*kept, args.planning, args.filter);
  return 0;
}

}  // namespace

void add_plan_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* command = app.add_subcommand(
      "plan",
      "Print where every tensor of a checkpoint goes, from its headers alone: for each source tensor its output\n"
      "name, the ranks it is written to (`all` when replicated), the slice each rank takes (e.g. dim1[0:512]),\n"
      "any dtype change and its bytes; the skipped tensors with their rule and reason; then one line per output\n"
      "file and the totals, including the bytes written more than once. Every problem (unmatched tensors,\n"
      "incomplete packed groups, splits that cut a packing unit, owner indices out of range, name clashes) is\n"
      "reported in one run (exit 4). `convert --dry-run` prints the same plan.");
  add_planning_options(*command, args->planning);
  add_format_option(*command, args->planning);
  command->add_option("--filter", args->filter,
                      "only rows whose source or output name contains a match of this RE2 pattern (the summary "
                      "still counts everything)");
  command->callback([&action, command, args] { action = [command, args] { return run_plan(*command, *args); }; });
}

}  // namespace shardwise::cli
