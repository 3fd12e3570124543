#pragma once
// Options shared by the commands that plan a checkpoint (`plan`, `convert`, `verify`): the
// reference converter's flags, with short aliases, declared once.
//
// Rules parameters have no flags of their own in C++ (the rules file declares them): any
// `--NAME VALUE` (or `--NAME=VALUE`) the command does not know is read as the rules parameter
// NAME with dashes as underscores (`--group-size 64` sets the parameter `group_size`), and
// `--param NAME=VALUE` is the explicit form. So the reference converter's own flags work unchanged.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <shardwise/plan/plan.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::cli {

// The values of the flags made from the bundled rules' parameters, by parameter name.
using BundledParamFlags = std::map<std::string, std::optional<std::string>>;

// One flag per parameter of any bundled rules (`--NAME`, dashes for underscores, with the file's
// help text), so that --help lists them; none when the bundled rules cannot be loaded (the command
// then reports that itself). Other rules files' parameters go through --NAME VALUE or --param.
void add_bundled_param_flags(CLI::App& command, BundledParamFlags& values);

struct PlanningOptions {
  std::string input;                      // --hf-ckpt-path
  std::optional<std::uint64_t> model_parallel;  // --model-parallel: required unless the rules mirror the input
  std::optional<std::string> rules_file;  // --rules NAME|PATH; the default bundled rules when absent
  std::vector<std::string> params;        // --param NAME=VALUE
  std::string format = "text";            // --format text|json (commands that print a plan)
  BundledParamFlags declared;             // --NAME for each parameter the bundled rules declare
};

// Declares --hf-ckpt-path/-i, --model-parallel/-m, --rules/-r, --param/-p and the bundled rules'
// parameter flags on `command`, and lets it accept other rules parameters as extra `--NAME VALUE`
// options.
void add_planning_options(CLI::App& command, PlanningOptions& options);
// Declares --format text|json.
void add_format_option(CLI::App& command, PlanningOptions& options);

// The rules --rules names (bundled rules by name, or a file), or the default bundled rules.
rules::Rules load_rules(const PlanningOptions& options);

// The rules parameters given: the bundled rules' flags, --param entries and the extra
// `--NAME VALUE` options left over by parsing `command`. Throws Error(usage) for malformed names or values.
rules::Params given_params(const CLI::App& command, const PlanningOptions& options, const rules::Rules& rules);
// Parameter values as given on the command line (by parameter name), read as `rules` declares them:
// a number, or one of a parameter's choices (Error(usage) listing them).
rules::Params param_values(const std::map<std::string, std::string>& texts, const rules::Rules& rules);

// Opens the checkpoint (headers only) and plans it.
plan::Plan plan_from_options(const CLI::App& command, const PlanningOptions& options,
                             const rules::Rules& rules);

// What `plan` and `convert --dry-run` print: --summary, --rank, --rule and --filter.
struct PlanViewOptions {
  bool summary = false;
  plan::PlanFilter filter;
};

// Declares --summary, --rank, --rule and --filter.
void add_plan_view_options(CLI::App& command, PlanViewOptions& view);

// Writes the plan to standard output as `shardwise plan` prints it, in options.format, as it is
// formatted. Throws Error(usage) for --summary with a filter or with JSON, Error(io) when standard
// output refuses it (a full disk, a closed pipe).
void print_plan(const plan::Plan& plan, const PlanningOptions& options, const PlanViewOptions& view);

}  // namespace shardwise::cli
