#include "cli/common_options.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/decimal.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/rules/detect.hpp>
#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/safetensors/hf_shards.hpp>

#include <shardwise/rules/suggest.hpp>

namespace shardwise::cli {

namespace {

// What the command line's -r/--rules named, found before the commands are built.
struct RulesArgument {
  std::optional<std::string> value;
  // The parameters of those rules, loaded once for every command's flags; or why they cannot be.
  // Without --rules, those of every bundled rules file (the rules are chosen from the checkpoint
  // later), each once, and which files declare it.
  std::optional<std::vector<rules::ParamInfo>> params;
  std::map<std::string, std::vector<std::string>> declared_by;
  std::string error;
};

// Every bundled file's parameters, each name once (the default rules' first, for its help text).
std::vector<rules::ParamInfo> bundled_params(std::map<std::string, std::vector<std::string>>& declared_by) {
  std::vector<rules::ParamInfo> params;
  std::vector<const rules::BundledRules*> files;
  for (const rules::BundledRules& bundled : rules::bundled_rules()) {
    if (bundled.name == rules::default_rules_name())
      files.insert(files.begin(), &bundled);
    else
      files.push_back(&bundled);
  }
  for (const rules::BundledRules* bundled : files) {
    const rules::Rules loaded = rules::load_bundled_rules(*bundled);
    for (const rules::ParamInfo& param : loaded.params()) {
      std::vector<std::string>& names = declared_by[param.name];
      if (names.empty()) params.push_back(param);
      names.push_back(bundled->name);
    }
  }
  for (auto& [name, names] : declared_by) std::sort(names.begin(), names.end());
  return params;
}

RulesArgument& rules_argument() {
  static RulesArgument argument;
  return argument;
}

const RulesArgument& loaded_rules_argument() {
  RulesArgument& argument = rules_argument();
  if (argument.params || !argument.error.empty()) return argument;
  try {
    argument.params = argument.value ? rules::load_named_rules(*argument.value).params()
                                     : bundled_params(argument.declared_by);
  } catch (const std::exception& e) {  // listed in --help; the command reports it with its exit code
    argument.error = e.what();
  }
  return argument;
}

// The commands that take rules parameters, waiting for add_param_flags() (after all their own options).
std::vector<std::pair<CLI::App*, ParamOptions*>>& commands_with_param_flags() {
  static std::vector<std::pair<CLI::App*, ParamOptions*>> commands;
  return commands;
}

std::string rules_shown(const RulesArgument& argument) {
  return argument.value ? *argument.value
                        : fmt::format("the default rules ({})", rules::default_rules_name());
}

// The footer's example of a parameter flag, with a parameter these rules have.
std::string param_flag_example(const RulesArgument& argument) {
  const std::vector<rules::ParamInfo> none;
  const std::vector<rules::ParamInfo>& params = argument.params ? *argument.params : none;
  if (params.empty()) {
    return fmt::format(
        "The rules parameters are given as flags (--NAME VALUE) or as --param NAME=VALUE; {} have "
        "none.",
        rules_shown(argument));
  }
  const rules::ParamInfo& param = params.front();
  const std::string value = !param.choices.empty() ? param.choices.back()
                            : param.default_value  ? std::to_string(*param.default_value)
                                                   : std::string("N");
  return fmt::format(
      "The flags of the rules parameters are those of the rules --rules names (without it, those "
      "of every bundled rules file): `{} {}` sets the parameter {}; --param {}={} is the same.",
      rules::param_flag(param.name), value, param.name, param.name, value);
}

// "HELP (default: 64)", "HELP (required by my.yaml)": what a parameter flag says in --help.
// Without --rules, which bundled rules declare it: "HELP (deepseek-v4; default: fp4)".
std::string param_help(const rules::ParamInfo& param, const RulesArgument& argument) {
  std::string help = param.help.empty() ? "the rules parameter " + param.name : param.help;
  if (!argument.value) {
    return help + fmt::format(" (a parameter of {}; {})",
                              fmt::join(argument.declared_by.at(param.name), ", "),
                              rules::param_default_text(param));
  }
  if (!param.from_config.empty()) return help + fmt::format(" ({})", rules::param_default_text(param));
  if (param.default_value) {
    const std::string value = param.choices.empty() || *param.default_value >= param.choices.size()
                                  ? std::to_string(*param.default_value)
                                  : param.choices[*param.default_value];
    return help + fmt::format(" (default: {})", value);
  }
  if (param.inferred) return help + " (default: each scope's own count, from the checkpoint)";
  return help + fmt::format(" (required by {})", rules_shown(argument));
}

const rules::ParamInfo* find_param(const rules::Rules& rules, const std::string& name) {
  for (const rules::ParamInfo& param : rules.params()) {
    if (param.name == name) return &param;
  }
  return nullptr;
}

// A value for `name` as the rules declare it; a name they do not declare gets a number here, and
// resolve_params() refuses it with the nearest name.
std::uint64_t param_value(const rules::Rules& rules, const std::string& name, const std::string& text,
                          const std::string& shown) {
  if (const rules::ParamInfo* param = find_param(rules, name)) return rules::parse_param_value(*param, text);
  const std::optional<std::uint64_t> value = parse_decimal(text);
  if (!value)
    throw Error(ErrorKind::usage, fmt::format("{}: '{}' is not a non-negative integer", shown, text));
  return *value;
}

// Arguments the command did not recognise: the first, with the nearest option of the command.
void refuse_extras(const CLI::App& command) {
  const std::vector<std::string> extras = command.remaining();
  if (extras.empty()) return;
  const std::string& token = extras.front();
  if (!token.starts_with("-")) throw Error(ErrorKind::usage, fmt::format("unexpected argument '{}'", token));
  std::vector<std::string> names;
  for (const CLI::Option* option : command.get_options()) {
    for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
  }
  const std::string flag = token.substr(0, token.find('='));
  const RulesArgument& argument = loaded_rules_argument();
  throw Error(ErrorKind::usage,
              fmt::format("unknown option {}{}: neither an option of `{}` nor a parameter of {} (`{} --help` "
                          "lists both)",
                          flag, rules::detail::did_you_mean(flag, names), command.get_name(),
                          rules_shown(argument), command.get_name()));
}

// Without --rules: the parameters of each bundled rules file ("--rules other-model: --n-items UINT
// (required), --mode a|b (default: a)"); those given must be parameters of the rules chosen.
std::string bundled_params_by_file() {
  std::string text;
  for (const rules::BundledRules& bundled : rules::bundled_rules()) {
    std::vector<std::string> flags;
    try {
      const rules::Rules loaded = rules::load_bundled_rules(bundled);
      for (const rules::ParamInfo& param : loaded.params()) {
        const std::string value = rules::param_argument_text(param, "UINT");
        flags.push_back(fmt::format("{} {} ({})", rules::param_flag(param.name), value,
                                    rules::param_default_text(param)));
      }
    } catch (const std::exception&) {
      continue;  // `rules check` reports a bundled file that does not load
    }
    if (!flags.empty()) text += fmt::format("\n  --rules {}: {}", bundled.name, fmt::join(flags, ", "));
  }
  return text.empty() ? ""
                      : "\nThe parameters of each bundled rules file (those given must be parameters of the "
                        "rules used):" +
                            text;
}

}  // namespace

void find_rules_argument(int argc, const char* const* argv) {
  std::optional<std::string>& value = rules_argument().value;
  for (int i = 1; i < argc; ++i) {
    const std::string_view token = argv[i];
    if (token == "--") break;
    if ((token == "-r" || token == "--rules") && i + 1 < argc) {
      value = argv[++i];
    } else if (token.starts_with("--rules=")) {
      value = std::string(token.substr(8));
    } else if (token.starts_with("-r") && token.size() > 2 && !token.starts_with("--")) {
      value = std::string(token.substr(2));
    }
  }
}

void add_param_options(CLI::App& command, ParamOptions& options) {
  // One NAME=VALUE per -p: a list would swallow the arguments that follow it (explain's names).
  command.add_option("-p,--param", options.entries, "a rules parameter, NAME=VALUE (repeatable)")
      ->allow_extra_args(false);
  // Unknown options are refused by given_params(), with the nearest option.
  command.allow_extras();
  commands_with_param_flags().push_back({&command, &options});
}

void add_param_flags() {
  const RulesArgument& argument = loaded_rules_argument();
  // The same for every command: each bundled file loaded once, not once per command.
  const std::string by_file = argument.value ? std::string() : bundled_params_by_file();
  for (const auto& [command, options] : commands_with_param_flags()) {
    std::string footer = "\n" + param_flag_example(argument) + " `shardwise rules check RULES` lists them.";
    if (!argument.params) {
      footer +=
          fmt::format("\nThe parameters of {} are not listed: {}", rules_shown(argument), argument.error);
    }
    for (const rules::ParamInfo& param : argument.params.value_or(std::vector<rules::ParamInfo>{})) {
      const std::string flag = rules::param_flag(param.name);
      // A parameter spelt like an option of the command keeps the option; --param still gives it.
      if (command->get_option_no_throw(flag) != nullptr) {
        footer += fmt::format(
            "\nThe parameter {} has no flag: {} is an option of `{}`; give it as --param {}=VALUE.",
            param.name, flag, command->get_name(), param.name);
        continue;
      }
      const std::string type = rules::param_argument_text(param, "UINT");
      try {
        command->add_option(flag, options->flags[param.name], param_help(param, argument))->type_name(type);
      } catch (const CLI::ConstructionError&) {  // a name CLI11 does not take as a flag (`_x` -> `---x`)
        options->flags.erase(param.name);
        footer += fmt::format(
            "\nThe parameter {} has no flag ({} is not an option name); give it as --param {}=VALUE.",
            param.name, flag, param.name);
      }
    }
    footer += by_file;
    command->footer(command->get_footer() + footer);
  }
}

rules::Params given_params(const CLI::App& command, const ParamOptions& options, const rules::Rules& rules) {
  refuse_extras(command);
  rules::Params params;
  for (const auto& [name, text] : options.flags) {
    if (!text) continue;
    if (find_param(rules, name) == nullptr) {  // without --rules, every bundled file's parameters are flags
      const auto& declared_by = rules_argument().declared_by;
      const auto it = declared_by.find(name);
      throw Error(
          ErrorKind::usage,
          fmt::format("{} is not a parameter of the rules {}{}", rules::param_flag(name), rules.name(),
                      it == declared_by.end() ? ""
                                              : fmt::format(" (it is one of {}: --rules chooses them)",
                                                            fmt::join(it->second, ", "))));
    }
    params[name] = param_value(rules, name, *text, rules::param_flag(name));
  }
  for (const std::string& entry : options.entries) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error(ErrorKind::usage, fmt::format("--param '{}': expected NAME=VALUE", entry));
    std::string name = entry.substr(0, eq);
    std::replace(name.begin(), name.end(), '-', '_');
    params[name] = param_value(rules, name, entry.substr(eq + 1), "--param " + entry);
  }
  return params;
}

void add_planning_options(CLI::App& command, PlanningOptions& options) {
  command
      .add_option("-i,--hf-ckpt-path,--input-fp8-hf-path", options.input,
                  "input checkpoint: a folder of .safetensors files, or one file")
      ->required();
  command
      .add_option("-m,--model-parallel", options.model_parallel,
                  "number of ranks (output files); required, except with rules that mirror the input's files "
                  "(fp8-cast-bf16): they write one file per input file and refuse any value but 1")
      ->check(CLI::Range(std::uint64_t{1}, plan::kMaxModelParallel));
  command.add_option(
      "-r,--rules", options.rules_file,
      "rules: the name of bundled rules (`shardwise rules list`), or a file path (a value with a '/' or a "
      ".yaml/.yml ending); without it, the bundled rules the checkpoint fits (each says what it accepts), "
      "named on stderr");
  command.add_option("--max-shard-size", options.max_shard_size,
                     "rules writing Hugging Face's layout (output: {layout: hf}): the most tensor bytes per "
                     "file, as save_pretrained's max_shard_size (bytes, or a number with TB, GB, MB or KB, "
                     "powers of ten; the rules' value, else 5GB, by default); refused for other rules");
  command.add_flag("--mirror", options.mirror,
                   "rules writing Hugging Face's layout: one output file per input file, under its name, "
                   "instead of save_pretrained's shards; refused for other rules");
  add_outside_links_option(command, options.allow_outside_links);
  add_param_options(command, options.params);
}

void add_outside_links_option(CLI::App& command, bool& allowed) {
  command.add_flag(
      "--allow-outside-links", allowed,
      "read input files (tensor files, the index, side files) that are links to files outside the input "
      "folder; refused by default, except a Hugging Face cache snapshot's links to its own blobs/");
}

void add_format_option(CLI::App& command, PlanningOptions& options) {
  command.add_option("--format", options.format, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
}

rules::Rules load_rules(const PlanningOptions& options) {
  return options.rules_file ? rules::load_named_rules(*options.rules_file) : rules::Rules::bundled();
}

namespace {

HugeVector<rules::TensorHeader> tensor_headers(const st::Checkpoint& checkpoint) {
  HugeVector<rules::TensorHeader> tensors;
  tensors.reserve(checkpoint.tensors().size());
  for (const st::TensorRef& tensor : checkpoint.tensors()) {
    tensors.push_back({tensor.info->name, tensor.info->dtype, tensor.info->shape});
  }
  return tensors;
}

// What the command line says that tells apart bundled rules which fit a checkpoint alike.
rules::Invocation invocation_of(const PlanningOptions& options) {
  rules::Invocation invocation;
  invocation.model_parallel = options.model_parallel.has_value();
  invocation.hf_output = options.max_shard_size.has_value() || options.mirror;
  for (const auto& [name, text] : options.params.flags) {
    if (text) invocation.params.push_back(name);
  }
  for (const std::string& entry : options.params.entries) {
    std::string name = entry.substr(0, entry.find('='));
    std::replace(name.begin(), name.end(), '-', '_');
    invocation.params.push_back(name);
  }
  return invocation;
}

void require_model_parallel(const PlanningOptions& options, const rules::Rules& rules) {
  if (!options.model_parallel && rules.output_layout() == rules::OutputLayout::per_rank) {
    throw Error(ErrorKind::usage, "--model-parallel is required");
  }
}

plan::PlanOptions plan_options(const PlanningOptions& options, rules::Params params,
                               const rules::Rules& rules) {
  plan::PlanOptions planning{options.model_parallel.value_or(1), std::move(params),
                             outside_links(options.allow_outside_links)};
  if (options.max_shard_size) planning.max_shard_size = st::parse_max_shard_size(*options.max_shard_size);
  planning.mirror = options.mirror;
  if (!options.max_shard_size && !options.mirror && options.recorded_max_shard_size &&
      rules.output_layout() == rules::OutputLayout::hf) {
    if (*options.recorded_max_shard_size == 0) {
      planning.mirror = true;
    } else {
      planning.max_shard_size = *options.recorded_max_shard_size;
    }
  }
  return planning;
}

}  // namespace

Planned plan_from_options(const CLI::App& command, const PlanningOptions& options, RulesNotice notice) {
  // With --rules: usage and rules errors before the checkpoint is read, then the checkpoint
  // checked against what they accept.
  const OutsideLinks links = outside_links(options.allow_outside_links);
  if (options.rules_file) {
    rules::Rules rules = rules::load_named_rules(*options.rules_file);
    const rules::Params params = given_params(command, options.params, rules);
    require_model_parallel(options, rules);
    const st::Checkpoint checkpoint = st::Checkpoint::open(options.input, links);
    const std::string warning = rules::check_rules_fit(rules, tensor_headers(checkpoint));
    if (!warning.empty()) fmt::print(stderr, "shardwise: warning: {}\n", warning);
    // Mirrored and Hugging Face layouts have no ranks; the planner refuses a --model-parallel.
    plan::Plan plan = plan::plan_checkpoint(checkpoint, rules, plan_options(options, params, rules));
    return {std::move(rules), std::move(plan)};
  }
  // Without, for verify: the rules the output's manifest records, with its parameters.
  if (options.recorded_rules) {
    const PlanningOptions::RecordedRules& recorded = *options.recorded_rules;
    rules::release_loaded_bundled_rules();  // the flags' loads: these rules are the manifest's
    rules::Rules rules =
        rules::Rules::load_text(recorded.text, recorded.where + " (its rules " + recorded.name + ")");
    rules::Params params = given_params(command, options.params, rules);
    for (const auto& [name, text] : recorded.params) {
      if (name != "mp" && params.count(name) == 0 && find_param(rules, name) != nullptr)
        params[name] = param_value(rules, name, text, fmt::format("{} in {}", name, recorded.where));
    }
    PlanningOptions with_mp = options;
    const auto mp = recorded.params.find("mp");
    if (!with_mp.model_parallel && mp != recorded.params.end() &&
        rules.output_layout() == rules::OutputLayout::per_rank)
      with_mp.model_parallel = param_value(rules, "mp", mp->second, fmt::format("mp in {}", recorded.where));
    require_model_parallel(with_mp, rules);
    const st::Checkpoint checkpoint = st::Checkpoint::open(options.input, links);
    if (notice == RulesNotice::print)
      fmt::print(stderr, "shardwise: rules: {} (as {} records them; --rules names others)\n", rules.name(),
                 recorded.where);
    plan::Plan plan = plan::plan_checkpoint(checkpoint, rules, plan_options(with_mp, params, rules));
    return {std::move(rules), std::move(plan)};
  }
  // Without: the bundled rules that fit the checkpoint, said on stderr.
  refuse_extras(command);
  const st::Checkpoint checkpoint = st::Checkpoint::open(options.input, links);
  rules::ChosenRules chosen =
      rules::choose_bundled_rules(tensor_headers(checkpoint), invocation_of(options),
                                  rules::ConfigFiles::folder(checkpoint.root(), links));
  if (notice == RulesNotice::print)
    fmt::print(stderr, "shardwise: rules: {} ({})\n", chosen.rules.name(), chosen.why);
  const rules::Params params = given_params(command, options.params, chosen.rules);
  require_model_parallel(options, chosen.rules);
  plan::Plan plan =
      plan::plan_checkpoint(checkpoint, chosen.rules, plan_options(options, params, chosen.rules));
  return {std::move(chosen.rules), std::move(plan)};
}

void add_plan_view_options(CLI::App& command, PlanViewOptions& view) {
  command.add_flag(
      "--summary", view.summary,
      "print the plan at a glance instead: per deciding rule the tensors and bytes it placed and how, "
      "per rank file its tensors and bytes with a balance bar, the skips and their reasons");
  command.add_option(
      "--rank", view.filter.rank,
      "only what this rank receives (JSON: `outputs` holds only this rank; no skipped tensors)");
  command.add_option("--rule", view.filter.rule,
                     "only the tensors this rule decided, by its name as the RULE column shows it (e.g. "
                     "table[wq])");
  command.add_option("--filter", view.filter.pattern,
                     "only rows whose source or output name contains a match of this RE2 pattern");
  command.footer(
      command.get_footer() +
      "\n--rank, --rule and --filter combine (a row must pass all); the per-rank table and the totals "
      "still count the whole plan.");
}

void print_plan(const plan::Plan& plan, const PlanningOptions& options, const PlanViewOptions& view) {
  if (view.summary && view.filter.active()) {
    throw Error(ErrorKind::usage,
                "--summary describes the whole plan: it cannot be combined with --rank, --rule "
                "or --filter");
  }
  if (view.summary && options.format == "json") {
    throw Error(ErrorKind::usage,
                "--summary is for people: it has no JSON form (the JSON plan has the totals)");
  }
  const plan::TextSink to_stdout = [](std::string_view piece) {
    if (std::fwrite(piece.data(), 1, piece.size(), stdout) != piece.size()) {
      throw_os_error("cannot write the plan to", "standard output", errno);
    }
  };
  if (view.summary) {
    to_stdout(plan::format_plan_summary(plan));
  } else if (options.format == "json") {
    plan::write_plan_json(plan, view.filter, to_stdout);
  } else {
    plan::write_plan_text(plan, view.filter, to_stdout);
  }
  if (std::fflush(stdout) != 0) throw_os_error("cannot write the plan to", "standard output", errno);
}

}  // namespace shardwise::cli
