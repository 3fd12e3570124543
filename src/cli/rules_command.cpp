// `shardwise rules check [FILE]`: validate a rules file (the bundled one without FILE) and print a
// summary. `shardwise rules show`: print the bundled rules, a starting point for a new file.
#include <fmt/format.h>

#include <shardwise/rules/bundled.hpp>
#include <shardwise/rules/rules.hpp>

#include "cli/commands.hpp"

namespace shardwise::cli {

namespace {

struct RulesOptions {
  std::string file;
};

int run_check(const RulesOptions& options) {
  const rules::Rules loaded = options.file.empty() ? rules::Rules::bundled() : rules::Rules::load_file(options.file);
  fmt::print("{}{}: OK\n", loaded.summary(), loaded.display_name());
  return 0;
}

int run_show() {
  for (const auto& entry : rules::bundled_rules()) fmt::print("{}", entry.text);
  return 0;
}

}  // namespace

void add_rules_command(CLI::App& app, Action& action) {
  auto* rules = app.add_subcommand("rules", "Check a rules file, or print the bundled one");
  rules->require_subcommand(1);
  auto options = std::make_shared<RulesOptions>();
  auto* check = rules->add_subcommand("check", "Validate a rules file and summarize it (exit 3 with every problem found)");
  check->add_option("FILE", options->file, "Rules file (default: the bundled rules)");
  check->callback([&action, options] { action = [options] { return run_check(*options); }; });
  auto* show = rules->add_subcommand("show", "Print the bundled rules (a starting point for a new checkpoint)");
  show->callback([&action] { action = [] { return run_show(); }; });
  add_rules_scaffold_command(*rules, action);
}

}  // namespace shardwise::cli
