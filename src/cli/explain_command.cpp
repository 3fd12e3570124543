// `shardwise explain NAME...`: how the rules decide each tensor name, step by step.
#include <charconv>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/explain.hpp>
#include <shardwise/rules/rules.hpp>

#include "cli/commands.hpp"

namespace shardwise::cli {

namespace {

struct ExplainOptions {
  std::string rules_file;
  std::optional<std::uint64_t> n_experts;
  std::uint64_t model_parallel = 1;
  std::vector<std::string> params;  // NAME=VALUE
  std::vector<std::string> names;
};

rules::Params parse_params(const ExplainOptions& options) {
  rules::Params given{{"mp", options.model_parallel}};
  if (options.n_experts) given["n_experts"] = *options.n_experts;
  for (const auto& text : options.params) {
    const auto equals = text.find('=');
    std::uint64_t value = 0;
    const char* first = text.data() + (equals == std::string::npos ? text.size() : equals + 1);
    const char* last = text.data() + text.size();
    const auto [end, ec] = std::from_chars(first, last, value);
    if (equals == std::string::npos || equals == 0 || first == last || ec != std::errc() || end != last) {
      throw Error(ErrorKind::usage, fmt::format("--param '{}': expected NAME=VALUE with a non-negative integer VALUE", text));
    }
    given[text.substr(0, equals)] = value;
  }
  return given;
}

int run_explain(const ExplainOptions& options) {
  const rules::Rules loaded =
      options.rules_file.empty() ? rules::Rules::bundled() : rules::Rules::load_file(options.rules_file);
  const rules::Params params = loaded.resolve_params(parse_params(options));
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
  explain->add_option("--rules", options->rules_file, "Rules file (default: the bundled deepseek-v4-w4a16.yaml)");
  explain->add_option("--n-experts", options->n_experts, "Value of the n_experts parameter");
  explain->add_option("--model-parallel,--mp", options->model_parallel, "Number of ranks (default 1)")
      ->check(CLI::PositiveNumber);
  explain->add_option("--param", options->params, "Another rules parameter, NAME=VALUE (repeatable)");
  explain->add_option("NAME", options->names, "Tensor names as they appear in the input checkpoint")->required();
  explain->callback([&action, options] { action = [options] { return run_explain(*options); }; });
}

}  // namespace shardwise::cli
