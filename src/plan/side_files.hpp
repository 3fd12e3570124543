#pragma once
// Internal to the planner: the side files the rules do not copy as they are (`side_files:` entries
// `{NAME: drop}` and `{NAME: dequantized}`, docs/rules.md "Side files").

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::plan::detail {

// For each such entry whose file the input folder has: a dropped file is listed in
// Plan::dropped_side_files; a `dequantized` config.json becomes a generated file, the input's
// without its quantisation and with the dtype of the tensors the plan dequantises. Called once the
// outputs are placed. Problems: no tensor dequantised, or dequantised to two dtypes; a config that
// is not a JSON object; a file outside the folder (unless allowed).
void apply_side_file_rules(Plan& plan, const rules::Rules& rules, Diagnostics& problems);

}  // namespace shardwise::plan::detail
