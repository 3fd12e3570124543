#pragma once
// Which bundled rules a checkpoint is for, from each file's `accepts:` (docs/rules.md, "What the
// rules accept"): without --rules, the one that fits; with --rules, a refusal when the checkpoint
// is another bundled file's format.

#include <span>
#include <string>
#include <vector>

#include <shardwise/rules/accepts.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::rules {

// What the command line gives besides the checkpoint: it tells apart rules that fit alike (rules
// that mirror the input take no --model-parallel; the others need one; a parameter given must be
// one the rules declare).
struct Invocation {
  bool model_parallel = false;      // -m/--model-parallel given
  std::vector<std::string> params;  // the rules parameters given (flags and --param), by name
  bool hf_output = false;           // --max-shard-size or --mirror given (Hugging Face layout only)
};

struct ChosenRules {
  Rules rules;
  std::string why;  // "fits: FP8 weights, ...", for the line that announces the choice
};

// The one bundled rules file whose `accepts:` the checkpoint fits, narrowed by `invocation` when
// several fit. A file whose `from_config:` parameters refuse the checkpoint's `config` (a
// quant_method it does not take) does not fit. Error(input) when none fits (each candidate with
// what does not hold), Error(rules) when the invocation leaves none or several (each with why):
// --rules chooses.
ChosenRules choose_bundled_rules(std::span<const TensorHeader> tensors, const Invocation& invocation,
                                 const ConfigFiles& config = ConfigFiles());

// With --rules (loaded as `rules`): Error(rules) when they declare `accepts:`, the
// checkpoint does not fit them, and bundled rules that fit it exist (named in the message). Returns
// a warning (else "") when the checkpoint fits neither them nor any bundled rules: they are used
// as asked.
std::string check_rules_fit(const Rules& rules, std::span<const TensorHeader> tensors);

}  // namespace shardwise::rules
