#pragma once
// Planning: input headers + rules -> Plan. Never reads tensor data.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

namespace shardwise::plan {

// More ranks than this is a typo, not a cluster: refused before any allocation.
inline constexpr std::uint64_t kMaxModelParallel = 4096;

struct PlanOptions {
  std::uint64_t model_parallel = 1;
  rules::Params params;  // given on the command line; defaults come from the rules file
  // A side file that leads outside the input folder is refused (Error(input)) unless allowed.
  OutsideLinks outside_links = OutsideLinks::refuse;
  // For rules whose output is `layout: hf` only (Error(usage) for others): --max-shard-size, which
  // replaces the rules' max_shard_size, and --mirror (one file per input file). Not both.
  std::optional<std::uint64_t> max_shard_size{};
  bool mirror = false;
};

// Every problem of the checkpoint (unmatched tensors, incomplete or duplicated packed groups,
// splits that cut a packing unit or group, owned indices out of range, output name clashes) is
// collected and reported in one Error(input).
Plan plan_checkpoint(const st::Checkpoint& checkpoint, const rules::Rules& rules, const PlanOptions& options);

// Receives a formatted plan piece by piece, in order (about a MiB at a time): a full-size plan is
// tens of MB of text, written as it is formatted rather than held whole.
using TextSink = std::function<void(std::string_view)>;

// What a view of the plan shows (all given criteria must hold). The totals and the per-rank table
// always describe the whole plan.
struct PlanFilter {
  std::optional<std::string> pattern;  // --filter: an RE2 pattern searched in source or output names
  std::optional<std::uint64_t> rank;   // --rank: only what this rank receives (no skipped tensors)
  std::optional<std::string> rule;     // --rule: only what this rule decided: its name ("table[wq]")
  bool active() const noexcept { return pattern || rank || rule; }
};

// Text for people (docs/plan.md) and JSON for programs (docs/plan-json.md), narrowed by `filter`.
// Both deterministic. Throw Error(usage) for a filter that cannot apply (an invalid pattern, a
// rank >= mp, a rule that decided nothing).
void write_plan_text(const Plan& plan, const PlanFilter& filter, const TextSink& sink);
std::string format_plan_text(const Plan& plan, const PlanFilter& filter = {});
nlohmann::json plan_to_json(const Plan& plan, const PlanFilter& filter = {});
// The same JSON as text, streamed without building a DOM (fast on 100,000s of tensors): one
// tensor per line, keys in the documented order, ending with a newline.
void write_plan_json(const Plan& plan, const PlanFilter& filter, const TextSink& sink);
std::string format_plan_json(const Plan& plan, const PlanFilter& filter = {});
// The plan at a glance, tens of lines whatever its size: per deciding rule the tensors and bytes
// it placed and how; per rank file its tensors and bytes with a balance bar; the skips by reason.
std::string format_plan_summary(const Plan& plan);

}  // namespace shardwise::plan
