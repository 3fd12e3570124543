// `shardwise rules list`: the bundled rules, by name, with their descriptions.
// `shardwise rules show [NAME]`: print bundled rules (the default without NAME), a starting point.
// `shardwise rules check [NAME|PATH]`: validate rules (the default without one), summarize them and
// run the file's own tests.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/accepts.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/rules/rules.hpp>

#include "cli/commands.hpp"

namespace shardwise::cli {

namespace {

struct RulesOptions {
  std::string check;  // a name or a path
  std::string show;   // a name
};

// What --rules NAME|PATH means, for the help texts.
constexpr const char* kNameOrPath =
    "a value with a '/' or a .yaml/.yml ending is a file path, anything else the name of bundled rules";

// Loads the rules (every problem of the file, exit 3), then runs the file's own tests (every
// failure, exit 3).
int run_check(const RulesOptions& options) {
  const rules::Rules loaded = rules::load_named_rules(options.check);
  fmt::print("{}", loaded.summary());
  if (const std::string accepts = rules::Accepts::of_named_rules(options.check).describe();
      !accepts.empty()) {
    fmt::print("  accepts: {}\n", accepts);
  }
  const rules::Rules::TestReport report = loaded.run_tests();
  Diagnostics failures(ErrorKind::rules);
  for (const auto& failure : report.failures) failures.add(failure);
  std::fflush(stdout);
  failures.check(fmt::format("the tests of {} fail", loaded.display_name()));
  if (report.run > 0) fmt::print("  tests: {} passed\n", report.run);
  fmt::print("{}: OK\n", loaded.display_name());
  return 0;
}

int run_list() {
  const auto& all = rules::bundled_rules();
  std::size_t width = 0;
  for (const auto& entry : all) width = std::max(width, entry.name.size());
  for (const auto& entry : all) {
    const rules::Rules loaded = rules::Rules::load_text(entry.text, "<bundled>/" + entry.file_name);
    const bool is_default = entry.name == rules::default_rules_name();
    fmt::print("{:<{}}  {}{}\n", entry.name, width, loaded.description(), is_default ? " (default)" : "");
  }
  return 0;
}

int run_show(const RulesOptions& options) {
  const rules::BundledRules* bundled = rules::find_bundled_rules(options.show);
  if (bundled == nullptr) throw Error(ErrorKind::usage, rules::unknown_bundled_rules(options.show));
  fmt::print("{}", bundled->text);
  return 0;
}

}  // namespace

void add_rules_command(CLI::App& app, Action& action) {
  auto* rules = app.add_subcommand("rules", "List, print, check or draft rules files");
  rules->require_subcommand(1);
  auto options = std::make_shared<RulesOptions>();
  options->check = options->show = std::string(rules::default_rules_name());

  auto* list = rules->add_subcommand("list", "List the bundled rules by name, with their descriptions");
  list->callback([&action] { action = [] { return run_list(); }; });

  auto* show = rules->add_subcommand("show", "Print bundled rules (a starting point for a new checkpoint)");
  show->add_option("NAME", options->show, "Name of bundled rules (`shardwise rules list`)")
      ->capture_default_str();
  show->callback([&action, options] { action = [options] { return run_show(*options); }; });

  auto* check = rules->add_subcommand(
      "check", "Validate rules, summarize them and run their tests (exit 3 with every problem or failure)");
  check->add_option("RULES", options->check, std::string("Bundled rules or a rules file: ") + kNameOrPath)
      ->capture_default_str();
  check->callback([&action, options] { action = [options] { return run_check(*options); }; });
  add_rules_scaffold_command(*rules, action);
}

}  // namespace shardwise::cli
