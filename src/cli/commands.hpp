#pragma once
// Each subcommand lives in its own file: it declares its options on `app` and, when chosen, sets
// `action` to run it. main() owns parsing and the mapping of errors to exit codes.

#include <functional>

#include <CLI/CLI.hpp>

namespace shardwise::cli {

// Returns the process exit code; throws shardwise::Error for failures.
using Action = std::function<int()>;

void add_inspect_command(CLI::App& app, Action& action);
void add_rules_command(CLI::App& app, Action& action);    // rules check
void add_rules_scaffold_command(CLI::App& rules, Action& action);  // rules scaffold, under `rules`
void add_explain_command(CLI::App& app, Action& action);
void add_plan_command(CLI::App& app, Action& action);
void add_convert_command(CLI::App& app, Action& action);
void add_verify_command(CLI::App& app, Action& action);

}  // namespace shardwise::cli
