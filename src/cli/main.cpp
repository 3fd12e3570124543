// The thin executable: parse arguments, run one library entry point, map errors to exit codes.

#include <cstdio>
#include <exception>
#include <new>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/printable.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // One malloc arena for every thread. glibc gives each thread its own, and memory freed in one
  // (the planner's decision thread, the writers') stays resident there unused by the others: at
  // 217k tensors convert's peak RSS was 329 MiB with per-thread arenas, 280 MiB with one. The
  // threads allocate little once running (buffers are taken once), so they do not contend.
  mallopt(M_ARENA_MAX, 1);
#endif
  CLI::App app{
      "shardwise: convert large-model checkpoints between layouts, driven by declarative rules.\n"
      "Plan from headers alone, convert with bounded memory, verify the result.",
      "shardwise"};
  app.require_subcommand(1);
  app.set_version_flag("--version", shardwise::cli::version_text,
                       "Print the version, commit, build and the kernels this CPU runs, and exit");
  app.footer(
      "Exit codes: 0 ok, 1 the plans differ (diff), 2 usage, 3 rules file, 4 input checkpoint (or plan), "
      "5 I/O, 6 verification failed, 70 internal error, 130 interrupted (SIGINT; 143 for SIGTERM: the "
      "process ends by the signal, as shells "
      "report it).\nRun `shardwise COMMAND --help` for a command's options.");

  // The rules parameters are flags of the commands: which rules they come from must be known first.
  shardwise::cli::find_rules_argument(argc, argv);
  shardwise::cli::Action action;
  shardwise::cli::add_inspect_command(app, action);
  shardwise::cli::add_rules_command(app, action);
  shardwise::cli::add_explain_command(app, action);
  shardwise::cli::add_plan_command(app, action);
  shardwise::cli::add_convert_command(app, action);
  shardwise::cli::add_reshard_command(app, action);
  shardwise::cli::add_verify_command(app, action);
  shardwise::cli::add_diff_command(app, action);
  shardwise::cli::add_param_flags();  // after the commands' own options, which they must not shadow
  shardwise::cli::add_completion_commands(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return static_cast<int>(shardwise::ErrorKind::usage);
  }

  try {
    return action ? action() : 0;
  } catch (const shardwise::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "shardwise: error: {}\n", shardwise::printable_lines(e.what()));
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "shardwise: error: out of memory\n");
    return shardwise::cli::kInternalError;
  } catch (const std::exception& e) {
    fmt::print(stderr, "shardwise: internal error: {}\n", shardwise::printable_lines(e.what()));
    return shardwise::cli::kInternalError;
  }
}
