#pragma once
// `shardwise diff`: two plans written by `plan --format json` compared source tensor by source
// tensor (docs/plan.md). Every placement field a plan's JSON holds is compared, known or not,
// except the deciding rule's label (its line moves with every edit above it) and a skip's reason.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shardwise::plan {

// One thing that differs, as people read it: "ranks", "0-7", "3".
struct FieldChange {
  std::string field;
  std::string old_value;
  std::string new_value;
};

enum class TensorChangeKind { placement, only_old, only_new };

struct TensorChange {
  std::string name;  // the source tensor
  TensorChangeKind kind = TensorChangeKind::placement;
  std::vector<FieldChange> fields;  // placement: what differs; only_*: where the one plan puts it
};

struct PlanDiff {
  std::string old_name, new_name;         // the files as given
  std::vector<FieldChange> context;       // rules, params, input: shown, never a difference
  std::vector<FieldChange> plan_changes;  // model_parallel, rank files, side files
  std::vector<TensorChange> tensors;      // sorted by name (byte order)
  std::uint64_t old_tensors = 0;          // source tensors in each plan (placed or skipped)
  std::uint64_t new_tensors = 0;
  std::uint64_t same = 0;  // source tensors placed the same way by both
  bool differ() const noexcept { return !plan_changes.empty() || !tensors.empty(); }
};

// Compares two JSON plans given as text. Throws Error(input) for a text that is not a plan (not
// JSON, truncated, another format or version, a required key missing or of the wrong type: the
// message names the file and where), Error(usage) for plans narrowed by different filters.
PlanDiff diff_plans(std::string_view old_text, std::string_view old_name, std::string_view new_text,
                    std::string_view new_name);
// The same, reading the files (Error(io) when one cannot be read). One file is held at a time.
PlanDiff diff_plan_files(const std::string& old_path, const std::string& new_path);

// For people: the plan-level changes, one row per source tensor that differs (old -> new), the
// tensors only one plan has, then the counts.
std::string format_plan_diff_text(const PlanDiff& diff);
// For programs: {"format": "shardwise-plan-diff", "version": 1, ...} (docs/plan.md).
std::string format_plan_diff_json(const PlanDiff& diff);

}  // namespace shardwise::plan
