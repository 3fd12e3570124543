// `shardwise explain NAME...`: how the rules decide each tensor name, step by step.
//
// Rules parameters have no flags in C++: each parameter of the rules --rules names becomes a flag
// (`params: {foo_bar: ...}` gives --foo-bar), and --param NAME=VALUE is the explicit form.

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/rules/explain.hpp>
#include <shardwise/rules/rules.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"

namespace shardwise::cli {

namespace {

struct ExplainOptions {
  std::string rules_file;
  std::uint64_t model_parallel = 1;
  ParamOptions params;  // --NAME VALUE for the rules' parameters, --param NAME=VALUE
  std::vector<std::string> names;
};

int run_explain(const CLI::App& command, const ExplainOptions& options) {
  const rules::Rules loaded =
      options.rules_file.empty() ? rules::Rules::bundled() : rules::load_named_rules(options.rules_file);
  rules::Params given = given_params(command, options.params, loaded);
  given["mp"] = options.model_parallel;
  const rules::Params params = loaded.resolve_params(given);
  fmt::print("rules: {} ({})\n", loaded.display_name(), loaded.name());
  for (const auto& name : options.names) {
    fmt::print("\n{}", rules::explain_decision(loaded, loaded.decide(name, params), params));
  }
  return 0;
}

}  // namespace

void add_explain_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<ExplainOptions>();
  auto* explain = app.add_subcommand("explain",
                                     "Show how the rules decide tensor names: every step, the deciding rule "
                                     "(FILE:LINE:COL), the output name and where it goes");
  explain->add_option(
      "-r,--rules", options->rules_file,
      fmt::format("Rules: the name of bundled rules (`shardwise rules list`; default {}), or a "
                  "file path (a value with a '/' or a .yaml/.yml ending)",
                  rules::default_rules_name()));
  explain->add_option("-m,--model-parallel", options->model_parallel, "Number of ranks (default 1)")
      ->check(CLI::Range(std::uint64_t{1}, plan::kMaxModelParallel));
  add_param_options(*explain, options->params);
  explain->add_option("NAME", options->names, "Tensor names as they appear in the input checkpoint")
      ->required();
  explain->callback([&action, explain, options] {
    action = [explain, options] { return run_explain(*explain, *options); };
  });
}

}  // namespace shardwise::cli
