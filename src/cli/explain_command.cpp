// `shardwise explain NAME...`: how the rules decide each tensor name, step by step.
//
// Rules parameters have no flags in C++: each parameter of the rules --rules names becomes a flag
// (`params: {foo_bar: ...}` gives --foo-bar), and --param NAME=VALUE is the explicit form.

#include <algorithm>
#include <filesystem>

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
  ParamOptions params;        // --NAME VALUE for the rules' parameters, --param NAME=VALUE
  std::string config_folder;  // --hf-ckpt-path: whose config files give `from_config:` parameters
  bool allow_outside_links = false;
  std::vector<std::string> names;
};

// The folder of a checkpoint given as a folder or as one of its files.
std::string config_folder_of(const std::string& input) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(input, ec)) return input;
  const std::filesystem::path parent = std::filesystem::path(input).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// Each parameter with its value and where it came from, when the rules read any from the
// checkpoint's files (other rules' output keeps its lines).
void print_param_sources(const rules::Rules& loaded, const rules::ResolvedParams& resolved) {
  const auto& declared = loaded.params();
  if (std::none_of(declared.begin(), declared.end(), [](const auto& p) { return !p.from_config.empty(); }))
    return;
  fmt::print("params:\n");
  for (const rules::ParamInfo& param : declared) {
    const auto value = resolved.values.find(param.name);
    const auto source = resolved.sources.find(param.name);
    if (value == resolved.values.end() || source == resolved.sources.end()) continue;
    fmt::print("  {}\n", rules::describe_param_source(
                             param.name, rules::param_value_text(param, value->second), source->second));
  }
}

int run_explain(const CLI::App& command, const ExplainOptions& options) {
  const rules::Rules loaded =
      options.rules_file.empty() ? rules::Rules::bundled() : rules::load_named_rules(options.rules_file);
  rules::Params given = given_params(command, options.params, loaded);
  given["mp"] = options.model_parallel;
  const rules::ConfigFiles config =
      options.config_folder.empty() ? rules::ConfigFiles()
                                    : rules::ConfigFiles::folder(config_folder_of(options.config_folder),
                                                                 outside_links(options.allow_outside_links));
  const rules::ResolvedParams resolved = loaded.resolve_params(given, config);
  const rules::Params& params = resolved.values;
  fmt::print("rules: {} ({})\n", loaded.display_name(), loaded.name());
  print_param_sources(loaded, resolved);
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
  explain->add_option("-i,--hf-ckpt-path", options->config_folder,
                      "a checkpoint folder whose config files (config.json, ...) give the parameters the "
                      "rules read from_config; only those files are read");
  add_outside_links_option(*explain, options->allow_outside_links);
  add_param_options(*explain, options->params);
  explain->add_option("NAME", options->names, "Tensor names as they appear in the input checkpoint")
      ->required();
  explain->callback([&action, explain, options] {
    action = [explain, options] { return run_explain(*explain, *options); };
  });
}

}  // namespace shardwise::cli
