#include "cli/common_options.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

namespace shardwise::cli {

namespace {

void add_param(std::map<std::string, std::string>& params, std::string name, const std::string& value,
               const std::string& shown) {
  if (name.empty()) throw Error(ErrorKind::usage, fmt::format("{}: a parameter needs a name", shown));
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  params[name] = value;
}

// The parameters of every bundled rules file, each name once (the default rules' declaration
// first, then the other files' in name order).
std::vector<rules::ParamInfo> bundled_params() {
  std::vector<rules::ParamInfo> declared;
  std::vector<const rules::BundledRules*> files{rules::find_bundled_rules(rules::default_rules_name())};
  for (const rules::BundledRules& bundled : rules::bundled_rules()) files.push_back(&bundled);
  for (const rules::BundledRules* file : files) {
    if (file == nullptr) continue;
    const rules::BundledRules& bundled = *file;
    try {
      const rules::Rules loaded = rules::Rules::load_text(bundled.text, bundled.file_name);
      for (const rules::ParamInfo& param : loaded.params()) {
        const auto same = [&](const rules::ParamInfo& p) { return p.name == param.name; };
        if (std::none_of(declared.begin(), declared.end(), same)) declared.push_back(param);
      }
    } catch (const Error&) {
      // reported by the command that loads them
    }
  }
  return declared;
}

}  // namespace

void add_bundled_param_flags(CLI::App& command, BundledParamFlags& values) {
  for (const auto& param : bundled_params()) {
    std::string flag = "--" + param.name;
    std::replace(flag.begin() + 2, flag.end(), '_', '-');
    std::string help = param.help.empty() ? "the rules parameter " + param.name : param.help;
    if (!param.choices.empty()) help += fmt::format(" (one of: {})", fmt::join(param.choices, ", "));
    if (param.default_value) {
      help += fmt::format(" (bundled rules' default: {})", rules::param_value_text(param, *param.default_value));
    } else if (param.inferred) {
      help += " (default: each scope's own count, from the checkpoint)";
    } else {
      help += " (required by the bundled rules)";
    }
    command.add_option(flag, values[param.name], help)
        ->type_name(param.choices.empty() ? "UINT" : fmt::format("{{{}}}", fmt::join(param.choices, ",")));
  }
}

void add_planning_options(CLI::App& command, PlanningOptions& options) {
  command
      .add_option("-i,--hf-ckpt-path,--input-fp8-hf-path", options.input,
                  "input checkpoint: a folder of .safetensors files, or one file")
      ->required();
  command
      .add_option("-m,--model-parallel", options.model_parallel,
                  "number of ranks (output files); required, except with rules that mirror the input's files "
                  "(fp8-cast-bf16), which refuse it")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{4096}));
  command.add_option(
      "-r,--rules", options.rules_file,
      fmt::format("rules: the name of bundled rules (`shardwise rules list`; default {}), or a "
                  "file path (a value with a '/' or a .yaml/.yml ending)",
                  rules::default_rules_name()));
  add_bundled_param_flags(command, options.declared);
  // One NAME=VALUE per -p: a list would swallow the arguments that follow it.
  command.add_option("-p,--param", options.params, "a rules parameter, NAME=VALUE (repeatable)")
      ->allow_extra_args(false);
  command.allow_extras();
  command.footer(
      command.get_footer() + "\n" +
      "Rules parameters are also given as --NAME VALUE, dashes for underscores: `--group-size 64` sets "
      "the rules parameter group_size (`shardwise rules check` lists them).");
}

void add_format_option(CLI::App& command, PlanningOptions& options) {
  command.add_option("--format", options.format, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
}

rules::Rules load_rules(const PlanningOptions& options) {
  return options.rules_file ? rules::load_named_rules(*options.rules_file) : rules::Rules::bundled();
}

rules::Params given_params(const CLI::App& command, const PlanningOptions& options, const rules::Rules& rules) {
  std::map<std::string, std::string> params;
  for (const auto& [name, value] : options.declared) {
    if (value) params[name] = *value;
  }
  for (const std::string& entry : options.params) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos)
      throw Error(ErrorKind::usage, fmt::format("--param {}: expected NAME=VALUE", entry));
    add_param(params, entry.substr(0, eq), entry.substr(eq + 1), "--param " + entry);
  }
  const std::vector<std::string> extras = command.remaining();
  for (std::size_t i = 0; i < extras.size(); ++i) {
    const std::string& token = extras[i];
    if (token.size() < 3 || token.compare(0, 2, "--") != 0) {
      throw Error(ErrorKind::usage, fmt::format("unexpected argument '{}'", token));
    }
    const auto eq = token.find('=');
    if (eq != std::string::npos) {
      add_param(params, token.substr(2, eq - 2), token.substr(eq + 1), token);
    } else if (i + 1 < extras.size()) {
      add_param(params, token.substr(2), extras[i + 1], token + " " + extras[i + 1]);
      ++i;
    } else {
      throw Error(ErrorKind::usage, fmt::format("{} needs a value", token));
    }
  }
  return param_values(params, rules);
}

rules::Params param_values(const std::map<std::string, std::string>& texts, const rules::Rules& rules) {
  rules::Params params;
  for (const auto& [name, text] : texts) {
    const auto& declared = rules.params();
    const auto it = std::find_if(declared.begin(), declared.end(), [&](const auto& p) { return p.name == name; });
    // An undeclared name is read as a number here and reported by Rules::resolve_params.
    params[name] = rules::parse_param_value(it != declared.end() ? *it : rules::ParamInfo{name, {}, false, "", {}, {}}, text);
  }
  return params;
}

plan::Plan plan_from_options(const CLI::App& command, const PlanningOptions& options,
                             const rules::Rules& rules) {
  const rules::Params params = given_params(command, options, rules);
  if (!options.model_parallel && !rules.mirrors_input()) {
    throw Error(ErrorKind::usage, "--model-parallel is required");
  }
  const st::Checkpoint checkpoint = st::Checkpoint::open(options.input);
  // Mirrored rules plan one output per input file; the planner refuses a --model-parallel.
  return plan::plan_checkpoint(checkpoint, rules, {options.model_parallel.value_or(1), params});
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
