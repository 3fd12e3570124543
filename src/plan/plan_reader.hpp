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
  // Forgets the names numbered `count` and above.
  void truncate(std::size_t count);

 private:
  void rehash(std::size_t slots);

  TextStore text_;
  HugeVector<std::string_view> names_;  // by id, views into text_
  // Two plans list their tensors in much the same order: the name after the one found last is
  // tried before the hash table (whose probes miss the cache).
  std::uint32_t next_ = 0;
  HugeVector<std::uint32_t> slots_;  // open addressing: id + 1, 0 for an empty slot
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
  HugeVector<PlacementRecord> placements;  // sorted by (source, rank, fields); see renumber
  std::vector<SkipRecord> skipped;         // sorted by source
  TextStore text;                          // the records' fields
};

// Where the fast path (plan_scan.cpp) reads a plan to: the head as the SAX reader leaves it, each
// placement (its rank still 0) and skipped entry, and by placement its index in `outputs`.
struct PlainPlan {
  PlanRecords& records;
  NameTable& names;
  HugeVector<std::size_t>& output_of_placement;
};

// False when `text` leaves the plain subset that `shardwise plan --format json` writes (escapes,
// floats, a key twice, an unusual nesting, ...): read_plan_records then uses the full reader, on
// records made anew and names truncated to their size before.
bool read_plain_plan(std::string_view text, PlainPlan plan);
// The same, reading a file through `window` (it is read to its end only when the plan is plain).
bool read_plain_plan(FileWindow& window, PlainPlan plan);

// Which reader read_plan_records uses: the fast one when the text is plain, or the full one always
// (for tests that compare them).
enum class PlanReader { fast_when_plain, full };

// Throws Error(input) naming `file` and where when `text` is not a plan of version 1.
PlanRecords read_plan_records(std::string_view text, std::string_view file, NameTable& names,
                              PlanReader reader = PlanReader::fast_when_plain);

// A plan's file is read through a window of this size, a quarter of it kept ahead of each tensor
// (the longest of a full-size plan is 400 bytes; a fused output of many parts is longer).
inline constexpr std::size_t kPlanWindow = std::size_t{2} << 20;

// read_plan_records of the file `path`'s text. A regular file is read through a window of
// `window` bytes by the fast reader (`ahead` of them kept ahead of each tensor), and whole only
// when the fast reader gives up; a pipe is read whole. Throws as FileText::read and
// read_plan_records.
PlanRecords read_plan_file(const std::string& path, NameTable& names, std::size_t window = kPlanWindow,
                           std::size_t ahead = kPlanWindow / 4);

// Moves `records`' source ids from `from`'s numbering to `into`'s, interning each name of `from` in
// `into` in id order: a plan read with a table of its own (on a thread of its own) then numbers its
// names as if it had been read with `into`. The placements stay grouped by source, each group in
// its order, but the groups are no longer in id order.
void renumber(PlanRecords& records, const NameTable& from, NameTable& into);

}  // namespace shardwise::plan::detail
