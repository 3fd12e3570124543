// `shardwise explain NAME...`: how the rules decide each tensor name, step by step.
//
// Rules parameters have no flags in C++: each parameter the bundled rules declare becomes a flag
// (`params: {foo_bar: ...}` gives --foo-bar), and --param NAME=VALUE gives any parameter of any file.
#include <charconv>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
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
  BundledParamFlags declared;  // flags from the bundled rules' params
  std::vector<std::string> params;                               // --param NAME=VALUE
  std::vector<std::string> names;
};

rules::Params parse_params(const ExplainOptions& options, const rules::Rules& rules) {
  std::map<std::string, std::string> texts;
  for (const auto& [name, value] : options.declared) {
    if (value) texts[name] = *value;
  }
  for (const auto& text : options.params) {
    const auto equals = text.find('=');
    if (equals == std::string::npos || equals == 0 || equals + 1 == text.size()) {
      throw Error(ErrorKind::usage, fmt::format("--param '{}': expected NAME=VALUE", text));
    }
    texts[text.substr(0, equals)] = text.substr(equals + 1);
  }
  rules::Params given = param_values(texts, rules);
  given["mp"] = options.model_parallel;
  return given;
}

int run_explain(const ExplainOptions& options) {
  const rules::Rules loaded =
      options.rules_file.empty() ? rules::Rules::bundled() : rules::load_named_rules(options.rules_file);
  const rules::Params params = loaded.resolve_params(parse_params(options, loaded));
  fmt::print("rules: {} ({})\n", loaded.display_name(), loaded.name());
  for (const auto& name : options.names) {
    fmt::print("\n{}", rules::explain_decision(loaded.decide(name, params), params));
  }
  return 0;
}

}  // namespace

void add_explain_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<ExplainOptions>();
  auto* explain = app.add_subcommand("explain", "Show how the rules decide tensor names: every step, the deciding rule "
                                                "(FILE:LINE:COL), the output name and where it goes");
  explain->add_option(
      "-r,--rules", options->rules_file,
      fmt::format("Rules: the name of bundled rules (`shardwise rules list`; default {}), or a "
                  "file path (a value with a '/' or a .yaml/.yml ending)",
                  rules::default_rules_name()));
  explain->add_option("-m,--model-parallel", options->model_parallel, "Number of ranks (default 1)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 20));
  add_bundled_param_flags(*explain, options->declared);
  // One NAME=VALUE per -p: a list would take the tensor names that follow it as more parameters.
  explain->add_option("-p,--param", options->params, "A rules parameter, NAME=VALUE (repeatable)")
      ->allow_extra_args(false);
  explain->add_option("NAME", options->names, "Tensor names as they appear in the input checkpoint")->required();
  explain->callback([&action, options] { action = [options] { return run_explain(*options); }; });
}

}  // namespace shardwise::cli
