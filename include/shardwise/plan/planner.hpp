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
};

// Every problem of the checkpoint (unmatched tensors, incomplete or duplicated packed groups,
// splits that cut a packing unit or group, owned indices out of range, output name clashes) is
// collected and reported in one Error(input).
Plan plan_checkpoint(const st::Checkpoint& checkpoint, const rules::Rules& rules, const PlanOptions& options);

// Receives a formatted plan piece by piece, in order (about a MiB at a time): a full-size plan is
// tens of MB of text, written as it is formatted rather than held whole.
using TextSink = std::function<void(std::string_view)>;

// Text for people (rows narrowed by `filter`, an RE2 pattern on source or output names) and JSON
// for programs (docs/plan-json.md). Both deterministic.
void write_plan_text(const Plan& plan, const std::optional<std::string>& filter, const TextSink& sink);
std::string format_plan_text(const Plan& plan, const std::optional<std::string>& filter);
nlohmann::json plan_to_json(const Plan& plan, const std::optional<std::string>& filter);
// The same JSON as text, streamed without building a DOM (fast on 100,000s of tensors): one
// tensor per line, keys in the documented order, ending with a newline.
void write_plan_json(const Plan& plan, const std::optional<std::string>& filter, const TextSink& sink);
std::string format_plan_json(const Plan& plan, const std::optional<std::string>& filter);

}  // namespace shardwise::plan
