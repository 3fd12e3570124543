#pragma once
// Internal to `diff`: a JSON plan (untrusted: any file a user names) read into compact records,
// one per placed tensor and per skipped tensor, instead of a DOM (a full-size plan is 100+ MB of
// JSON; its DOM would take gigabytes).

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardwise::plan::detail {

// Source tensor names of both plans, each stored once.
class NameTable {
 public:
  std::uint32_t intern(std::string_view name);
  std::string_view name(std::uint32_t id) const { return names_[id]; }
  std::size_t size() const noexcept { return names_.size(); }

 private:
  std::deque<std::string> names_;  // stable addresses for the views in ids_
  std::unordered_map<std::string_view, std::uint32_t> ids_;
};

// One output tensor of a plan: the source it comes from, its rank, and every other key of its
// JSON object (the rule label and the source's name taken out), as compact JSON with sorted keys,
// so that two placements are equal exactly when their texts are.
struct PlacementRecord {
  std::uint32_t source = 0;
  std::uint64_t rank = 0;
  std::string fields;
};

struct SkipRecord {
  std::uint32_t source = 0;
  std::string fields;  // the skipped entry without its name, rule and reason
};

struct PlanRecords {
  std::uint64_t model_parallel = 0;
  // Everything else of the plan: top-level keys, and `outputs` without their `tensors`.
  nlohmann::json head;
  std::vector<PlacementRecord> placements;  // sorted by (source, rank, fields)
  std::vector<SkipRecord> skipped;          // sorted by source
};

// Throws Error(input) naming `file` and where when `text` is not a plan of version 1.
PlanRecords read_plan_records(std::string_view text, std::string_view file, NameTable& names);

}  // namespace shardwise::plan::detail
