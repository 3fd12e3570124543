// Choosing the bundled rules a checkpoint is for, and refusing --rules of another format: each
// bundled file's `accepts:` judged against the checkpoint's headers, the command line telling
// apart files that fit alike.
#include <shardwise/rules/detect.hpp>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/bundled.hpp>

namespace shardwise::rules {

namespace {

struct Candidate {
  std::string name;
  Rules rules;
  AcceptsVerdict verdict;
};

// A fitting candidate whose parameters the checkpoint's config files refuse (Error(input): a value
// the rules do not take, such as quant_method "awq" for GPTQ rules) does not fit after all. Other
// problems (a parameter the command line must give) are the chosen rules' to report.
void judge_config(Candidate& candidate, const ConfigFiles& config) {
  if (!candidate.verdict.fits) return;
  try {
    candidate.rules.resolve_params({}, config);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::input) return;
    candidate.verdict.fits = false;
    candidate.verdict.unmet.push_back(fmt::format("the checkpoint's config refuses it: {}", e.what()));
  }
}

// Every bundled rules file that declares `accepts:`, judged (files without one are never chosen):
// the checkpoint's names searched once for all the files' conditions. The files are loaded once
// per process (load_bundled_rules), their `accepts:` read as they load.
std::vector<Candidate> judge_bundled(std::span<const TensorHeader> tensors,
                                     const ConfigFiles& config = ConfigFiles()) {
  std::vector<Rules> loaded;
  std::vector<Accepts> accepts;
  for (const BundledRules& bundled : bundled_rules()) {
    loaded.push_back(load_bundled_rules(bundled));
    accepts.push_back(Accepts::of_rules(loaded.back()));
  }
  release_loaded_bundled_rules();  // the files not chosen are freed with the candidates
  std::vector<const Accepts*> judged;
  for (const Accepts& one : accepts) judged.push_back(&one);
  std::vector<AcceptsVerdict> verdicts = Accepts::judge_all(judged, tensors);
  std::vector<Candidate> candidates;
  for (std::size_t i = 0; i < verdicts.size(); ++i) {
    if (!verdicts[i].declared) continue;
    candidates.push_back({bundled_rules()[i].name, std::move(loaded[i]), std::move(verdicts[i])});
    judge_config(candidates.back(), config);
  }
  return candidates;
}

// Why the command line rules `rules` out, or "".
std::string invocation_conflict(const Rules& rules, const Invocation& invocation) {
  const OutputLayout layout = rules.output_layout();
  if (layout == OutputLayout::mirror && invocation.model_parallel) {
    return "writes the input's files as they are named (mirrored) and takes no --model-parallel";
  }
  if (layout == OutputLayout::hf && invocation.model_parallel) {
    return "writes Hugging Face's layout, which has no ranks, and takes no --model-parallel";
  }
  if (layout != OutputLayout::hf && invocation.hf_output) {
    return "does not write Hugging Face's layout and takes no --max-shard-size or --mirror";
  }
  if (layout == OutputLayout::per_rank && !invocation.model_parallel)
    return "writes one file per rank and needs --model-parallel";
  for (const std::string& name : invocation.params) {
    const auto& declared = rules.params();
    if (std::none_of(declared.begin(), declared.end(), [&](const ParamInfo& p) { return p.name == name; })) {
      return fmt::format("takes no {}", param_flag(name));
    }
  }
  return "";
}

std::string fits_text(const AcceptsVerdict& verdict) {
  return fmt::format("fits: {}", fmt::join(verdict.met, ", "));
}

std::string unmet_text(const AcceptsVerdict& verdict) {
  return fmt::format("{}", fmt::join(verdict.unmet, "; "));
}

std::vector<std::string> names_of(const std::vector<const Candidate*>& candidates) {
  std::vector<std::string> names;
  for (const Candidate* candidate : candidates) names.push_back(candidate->name);
  return names;
}

// Removes from `fitting` the rules that defer to others of `fitting` (a format's general rules
// giving way to a model's own); says why for each, for the stderr line.
std::vector<std::string> drop_deferred(std::vector<const Candidate*>& fitting) {
  std::vector<std::string> deferred;
  const std::vector<std::string> fitting_names = names_of(fitting);
  std::erase_if(fitting, [&](const Candidate* candidate) {
    for (const std::string& other : candidate->verdict.defer_to) {
      if (std::find(fitting_names.begin(), fitting_names.end(), other) != fitting_names.end()) {
        deferred.push_back(fmt::format("{} also fits, but gives way to {} (--rules {} chooses it)",
                                       candidate->name, other, candidate->name));
        return true;
      }
    }
    return false;
  });
  return deferred;
}

}  // namespace

ChosenRules choose_bundled_rules(std::span<const TensorHeader> tensors, const Invocation& invocation,
                                 const ConfigFiles& config) {
  std::vector<Candidate> candidates = judge_bundled(tensors, config);
  std::vector<const Candidate*> fitting;
  for (const Candidate& candidate : candidates) {
    if (candidate.verdict.fits) fitting.push_back(&candidate);
  }
  if (fitting.empty()) {
    std::string message =
        "no bundled rules fit this checkpoint: give --rules with a rules file written for it (`shardwise "
        "rules "
        "scaffold CHECKPOINT` drafts one), or the bundled rules to use anyway. What each bundled file "
        "accepts:";
    for (const Candidate& candidate : candidates) {
      message += fmt::format("\n  {}: {}", candidate.name, unmet_text(candidate.verdict));
    }
    throw Error(ErrorKind::input, message);
  }
  // A format's general rules give way to rules written for the model, when both fit.
  const std::vector<std::string> deferred = drop_deferred(fitting);
  if (fitting.size() == 1) {
    std::string why = fits_text(fitting.front()->verdict);
    for (const std::string& other : deferred) why += "; " + other;
    return {std::move(candidates[static_cast<std::size_t>(fitting.front() - candidates.data())].rules),
            std::move(why)};
  }
  std::vector<const Candidate*> left;
  std::vector<std::string> ruled_out;
  for (const Candidate* candidate : fitting) {
    const std::string conflict = invocation_conflict(candidate->rules, invocation);
    if (conflict.empty()) {
      left.push_back(candidate);
    } else {
      ruled_out.push_back(fmt::format("{} also fits, but {}", candidate->name, conflict));
    }
  }
  if (left.size() == 1) {
    const Candidate* chosen = left.front();
    std::string why = fits_text(chosen->verdict);
    for (const std::string& other : ruled_out) why += "; " + other;
    return {std::move(candidates[static_cast<std::size_t>(chosen - candidates.data())].rules),
            std::move(why)};
  }
  std::string message = fmt::format(
      "this checkpoint fits {}, {}: give --rules NAME", fmt::join(names_of(fitting), ", "),
      left.empty() ? "but the command line suits none of them" : "and the command line does not tell which");
  for (const Candidate* candidate : fitting) {
    const std::string conflict = invocation_conflict(candidate->rules, invocation);
    message += fmt::format("\n  {}: {}", candidate->name,
                           conflict.empty() ? fits_text(candidate->verdict) : conflict);
  }
  throw Error(ErrorKind::rules, message);
}

std::string check_rules_fit(const Rules& rules, std::span<const TensorHeader> tensors) {
  const AcceptsVerdict verdict = Accepts::of_rules(rules).judge(tensors);
  if (!verdict.declared || verdict.fits) return "";
  std::vector<const Candidate*> fitting;
  const std::vector<Candidate> candidates = judge_bundled(tensors);
  for (const Candidate& candidate : candidates) {
    if (candidate.verdict.fits && candidate.name != rules.name()) fitting.push_back(&candidate);
  }
  drop_deferred(fitting);
  if (fitting.empty()) {
    return fmt::format(
        "the checkpoint is not what the rules {} accept ({}), nor what any other bundled rules "
        "accept: planning with {} as --rules asks",
        rules.name(), unmet_text(verdict), rules.name());
  }
  const std::vector<std::string> names = names_of(fitting);
  throw Error(
      ErrorKind::rules,
      fmt::format("the checkpoint is not what the rules {} accept: it {}. It fits {}: give --rules {}{}",
                  rules.name(), unmet_text(verdict), fmt::join(names, " and "),
                  names.size() == 1 ? names.front() : std::string("with one of them"),
                  " (`shardwise rules list` describes them)"));
}

}  // namespace shardwise::rules
