#pragma once
// `shardwise diff`: two plans written by `plan --format json` compared source tensor by source
// tensor (docs/plan.md). Every placement field a plan's JSON holds is compared, known or not,
// except the deciding rule's label (its line moves with every edit above it) and a skip's reason.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
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

// A TensorChange as PlanDiff makes it while it is visited: the views are valid during the call
// they are given to only. Two full-size plans that differ everywhere have ~190k of them: made one
// at a time, they cost no memory.
struct FieldChangeView {
  std::string_view field;
  std::string_view old_value;
  std::string_view new_value;
};
struct TensorChangeView {
  std::string_view name;
  TensorChangeKind kind = TensorChangeKind::placement;
  std::span<const FieldChangeView> fields;
};

namespace detail {
struct ComparedPlans;
}

struct PlanDiff {
  std::string old_name, new_name;         // the files as given
  std::vector<FieldChange> context;       // rules, params, input: shown, never a difference
  std::vector<FieldChange> plan_changes;  // model_parallel, rank files, side files
  std::uint64_t old_tensors = 0;          // source tensors in each plan (placed or skipped)
  std::uint64_t new_tensors = 0;
  std::uint64_t same = 0;  // source tensors placed the same way by both
  std::uint64_t placed_differently = 0, only_old = 0, only_new = 0;  // source tensors by kind

  bool differ() const noexcept {
    return !plan_changes.empty() || placed_differently + only_old + only_new > 0;
  }
  std::uint64_t count(TensorChangeKind kind) const noexcept;
  // visit(name) for each source tensor that differs, of `kind` or of any kind, in name order (byte
  // order): cheap, no row is made.
  void for_each_name(std::optional<TensorChangeKind> kind,
                     const std::function<void(std::string_view)>& visit) const;
  // visit(change) for the same tensors, each row made as it is visited.
  void for_each_tensor(std::optional<TensorChangeKind> kind,
                       const std::function<void(const TensorChangeView&)>& visit) const;
  // Every row as strings, in name order: for tests and small diffs.
  std::vector<TensorChange> tensors() const;

  // The plans' records the rows are made from (plan_diff.cpp).
  std::shared_ptr<const detail::ComparedPlans> plans;
};

// Compares two JSON plans given as text. Throws Error(input) for a text that is not a plan (not
// JSON, truncated, another format or version, a required key missing or of the wrong type: the
// message names the file and where), Error(usage) for plans narrowed by different filters.
PlanDiff diff_plans(std::string_view old_text, std::string_view old_name, std::string_view new_text,
                    std::string_view new_name);
// The same, reading the files (Error(io) when one cannot be read).
PlanDiff diff_plan_files(const std::string& old_path, const std::string& new_path);

// Where the formats write: called with consecutive pieces of the output.
using DiffSink = std::function<void(std::string_view)>;

// For people: the plan-level changes, one row per source tensor that differs (old -> new), the
// tensors only one plan has, then the counts. Written piece by piece as the rows are made.
void write_plan_diff_text(const PlanDiff& diff, const DiffSink& sink);
// For programs: {"format": "shardwise-plan-diff", "version": 1, ...} (docs/plan.md).
void write_plan_diff_json(const PlanDiff& diff, const DiffSink& sink);
// The same, as one string.
std::string format_plan_diff_text(const PlanDiff& diff);
std::string format_plan_diff_json(const PlanDiff& diff);

}  // namespace shardwise::plan
