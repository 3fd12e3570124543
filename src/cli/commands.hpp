#pragma once
// Each subcommand lives in its own file: it declares its options on `app` and, when chosen, sets
// `action` to run it. main() owns parsing and the mapping of errors to exit codes.

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace shardwise::cli {

// Returns the process exit code; throws shardwise::Error for failures.
using Action = std::function<int()>;

// `diff`'s answer "the plans differ", as diff(1) says it: not an error.
inline constexpr int kPlansDiffer = 1;
// A bug or an exhausted machine, apart from every answer and error above (sysexits' EX_SOFTWARE).
inline constexpr int kInternalError = 70;

void add_inspect_command(CLI::App& app, Action& action);
void add_rules_command(CLI::App& app, Action& action);             // rules check
void add_rules_scaffold_command(CLI::App& rules, Action& action);  // rules scaffold, under `rules`
void add_explain_command(CLI::App& app, Action& action);
void add_plan_command(CLI::App& app, Action& action);
void add_convert_command(CLI::App& app, Action& action);
void add_verify_command(CLI::App& app, Action& action);
void add_diff_command(CLI::App& app, Action& action);     // diff OLD.json NEW.json
void add_reshard_command(CLI::App& app, Action& action);  // reshard --from DIR
// completion bash|zsh, and the hidden man-page: both walk `app`, so they come after every command.
void add_completion_commands(CLI::App& app, Action& action);

// What `shardwise --version` prints: version, commit, build type, and the kernels this CPU runs.
std::string version_text();

}  // namespace shardwise::cli
