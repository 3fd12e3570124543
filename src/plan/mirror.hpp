#pragma once
// Internal to the planner: mirrored output (rules `output: {mirror: true}`, docs/rules.md). Each
// input file's tensors go whole, under their own names, to an output file of the same name; the
// input's model.safetensors.index.json is rewritten as Python's json.dump writes it, without the
// entries of the tensors a transform consumed (a dequantised weight's scale).

#include <set>
#include <string>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

namespace shardwise::plan::detail {

// The name of the index file a mirrored plan reads and rewrites.
inline constexpr const char* kIndexFileName = "model.safetensors.index.json";

// One output per input file, named as it, rank = the file's position; model_parallel = their count.
void make_mirrored_outputs(Plan& plan, const st::Checkpoint& checkpoint);

// Whether a placed decision fits mirrored output; when not, reports why (a split, an owner, a packed
// layout, a renamed output) naming the tensor and the rule.
// `output` is the output name the rules gave (the planner has moved it out of the decision).
bool fits_mirror(const rules::Decision& decision, const std::string& output, const std::string& rule_label,
                 Diagnostics& problems);

// Plan::generated_files gets the rewritten index: the input's weight_map in its order, without the
// entries of the tensors consumed as companions (a dequantised weight's scale). Called once the
// companions are resolved. An input without an index is a problem (the index is what the mirrored
// layout rewrites; DeepSeek's fp8_cast_bf16.py needs it too).
void add_mirrored_index(Plan& plan, Diagnostics& problems);

}  // namespace shardwise::plan::detail
