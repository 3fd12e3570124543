#pragma once
// Internal to `diff`: a JSON plan (untrusted: any file a user names) read into compact records,
// one per placed tensor and per skipped tensor, instead of a DOM (a full-size plan is 100+ MB of
// JSON; its DOM would take gigabytes).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "plan/text_store.hpp"

namespace shardwise::plan::detail {

// Source tensor names of both plans, each stored once, numbered in the order first seen.
class NameTable {
 public:
  std::uint32_t intern(std::string_view name);
  std::string_view name(std::uint32_t id) const { return names_[id]; }
  std::size_t size() const noexcept { return names_.size(); }
  void reserve(std::size_t count);

 private:
  void rehash(std::size_t slots);

  TextStore text_;
  std::vector<std::string_view> names_;  // by id, views into text_
  std::vector<std::uint32_t> slots_;     // open addressing: id + 1, 0 for an empty slot
};

// One output tensor of a plan: the source it comes from, its rank, and every other key of its
// JSON object (the rule label and the source's name taken out), as compact JSON with sorted keys,
// so that two placements are equal exactly when their texts are. The texts are views into the
// PlanRecords' store.
struct PlacementRecord {
  std::uint32_t source = 0;
  std::uint64_t rank = 0;
  std::string_view fields;
};

struct SkipRecord {
  std::uint32_t source = 0;
  std::string_view fields;  // the skipped entry without its name, rule and reason
};

struct PlanRecords {
  std::uint64_t model_parallel = 0;
  // Everything else of the plan: top-level keys, and `outputs` without their `tensors`.
  nlohmann::json head;
  std::vector<PlacementRecord> placements;  // sorted by (source, rank, fields)
  std::vector<SkipRecord> skipped;          // sorted by source
  TextStore text;                           // the records' fields
};

// A plan read by the fast path (plan_scan.cpp): the head as the SAX reader leaves it, and each
// placement and skipped entry with its source's name (a view into the text) and its fields (a view
// into `text`).
struct PlainPlan {
  struct Record {
    std::string_view name;
    std::string_view fields;
  };
  TextStore text;
  nlohmann::json head;
  std::vector<Record> placements;                // in the text's order
  std::vector<std::size_t> output_of_placement;  // by placement: its index in `outputs`
  std::vector<Record> skipped;
};

// False when `text` leaves the plain subset that `shardwise plan --format json` writes (escapes,
// floats, a key twice, an unusual nesting, ...): read_plan_records then uses the full reader.
bool read_plain_plan(std::string_view text, PlainPlan& plan);

// Throws Error(input) naming `file` and where when `text` is not a plan of version 1.
PlanRecords read_plan_records(std::string_view text, std::string_view file, NameTable& names);

}  // namespace shardwise::plan::detail
