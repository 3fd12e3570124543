#pragma once
// Options shared by the commands that plan a checkpoint (`plan`, `convert`, `verify`): the
// reference converter's flags, with short aliases, declared once; and the rules parameters' flags,
// which `explain` shares too.
//
// Rules parameters have no flags in C++: the rules file declares them. Before the commands are
// built, main() finds the rules the command line names (-r/--rules NAME|PATH, see
// find_rules_argument); each parameter of those rules (of every bundled rules file without one:
// the rules are then chosen from the checkpoint, and the parameters given checked against them)
// becomes a flag `--NAME VALUE` (dashes for underscores: `--group-size 64` sets `group_size`),
// listed by --help with its help text and default. `--param NAME=VALUE` is the explicit form.

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

// Called by main() with the whole command line before the commands are built: remembers the value
// of -r/--rules (`-r X`, `-rX`, `--rules X`, `--rules=X`; the last one given), whose parameters
// add_param_options() turns into flags.
void find_rules_argument(int argc, const char* const* argv);

// The rules parameters given on the command line.
struct ParamOptions {
  std::map<std::string, std::optional<std::string>> flags;  // --NAME VALUE, by parameter name
  std::vector<std::string> entries;                         // --param NAME=VALUE
};

// Declares -p/--param on `command`, and lets add_param_flags() give it the rules' parameter flags.
void add_param_options(CLI::App& command, ParamOptions& options);
// Called by main() once every command is built: gives each command of add_param_options() one flag
// per parameter of the rules find_rules_argument() found (with their help, default and choices:
// `--weight-format a|b`), except a parameter spelt like one of the command's own options (its
// help says to use --param). When those rules cannot be loaded, the help says why instead of
// listing their parameters (the command itself reports the error).
void add_param_flags();

// The parameters given as flags and --param, each value read as `rules` declares it (a number or
// a choice). Arguments the command did not recognise (`--foo`) are a usage error with the nearest
// option. Throws Error(usage).
rules::Params given_params(const CLI::App& command, const ParamOptions& options, const rules::Rules& rules);

struct PlanningOptions {
  std::string input;  // --hf-ckpt-path
  std::optional<std::uint64_t>
      model_parallel;  // --model-parallel: required unless the rules mirror the input
  std::optional<std::string>
      rules_file;                    // --rules NAME|PATH; when absent, the bundled rules that fit the input
  ParamOptions params;               // --NAME VALUE and --param NAME=VALUE
  std::string format = "text";       // --format text|json (commands that print a plan)
  bool allow_outside_links = false;  // --allow-outside-links
  // Rules whose output is Hugging Face's layout only (the planner refuses them for others):
  std::optional<std::string> max_shard_size;  // --max-shard-size SIZE (st::parse_max_shard_size)
  bool mirror = false;                        // --mirror: one output file per input file
  // verify: the max shard size the output's manifest records (0: mirrored), used for rules writing
  // Hugging Face's layout when neither option above is given.
  std::optional<std::uint64_t> recorded_max_shard_size{};
  // verify: the rules and parameters the output's manifest records, used when --rules is not given
  // (the conversion may have named rules that detection would not choose); a parameter or
  // --model-parallel given on the command line wins over the recorded one.
  struct RecordedRules {
    std::string name;
    std::string text;
    std::string where;                          // the manifest's path, for messages
    std::map<std::string, std::string> params;  // "mp" included, as the manifest records them
  };
  std::optional<RecordedRules> recorded_rules{};
};

// Declares --allow-outside-links on `command`.
void add_outside_links_option(CLI::App& command, bool& allowed);
inline OutsideLinks outside_links(bool allowed) {
  return allowed ? OutsideLinks::allow : OutsideLinks::refuse;
}

// Declares --hf-ckpt-path/-i, --model-parallel/-m, --rules/-r, --allow-outside-links,
// --max-shard-size, --mirror and the rules parameters (add_param_options) on `command`.
void add_planning_options(CLI::App& command, PlanningOptions& options);
// Declares --format text|json.
void add_format_option(CLI::App& command, PlanningOptions& options);

// The rules --rules names (bundled rules by name, or a file), or the default bundled rules
// (reshard's; the commands that plan a checkpoint choose with plan_from_options).
rules::Rules load_rules(const PlanningOptions& options);

struct Planned {
  rules::Rules rules;
  plan::Plan plan;  // refers to `rules`
};
// Whether the rules chosen without --rules are named on stderr (`shardwise: rules: NAME (fits:
// ...)`); --quiet keeps stderr for errors and warnings.
enum class RulesNotice { print, quiet };

// Opens the checkpoint (headers only) and plans it with the rules --rules names, refused when the
// checkpoint is another bundled file's format (rules::check_rules_fit); without --rules, with the
// bundled rules that fit it (rules::choose_bundled_rules).
Planned plan_from_options(const CLI::App& command, const PlanningOptions& options,
                          RulesNotice notice = RulesNotice::print);

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
