#pragma once
// Internal to the planner: members of packed layouts (the rules' `layouts:`) are collected by
// (layout, group) while the checkpoint is visited, because a group may span files. A complete
// group is checked (no member twice, dtypes, one logical [out, in] shape) and placed as a whole;
// groups still incomplete when every tensor has been seen are reported.

#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "plan/placer.hpp"

namespace shardwise::plan::detail {

class PackedGroups {
 public:
  // `members` is how many packed members the checkpoint may hold (an upper bound is fine): the
  // group index is sized once instead of growing through 100,000s of groups.
  // `params` are those the plan is made with: a member dim such as `in/group_size` divides by one.
  PackedGroups(std::size_t members, const rules::Params& params);
  // Records one member, and places its group as soon as it is complete. A member given twice (two
  // sources with the same output) is reported here and its group is not placed.
  void add(const rules::Decision& decision, Target target, Placer& placer);
  // Once every tensor was seen: reports the groups still missing members, naming what is there.
  void report_incomplete(Placer& placer) const;
  // Frees the groups (100,000s) once they were reported: before the owned tensors are placed.
  void clear();

 private:
  enum class State : std::uint8_t { open, placed, broken };
  static constexpr std::size_t kNotPlaced = static_cast<std::size_t>(-1);
  // A checkpoint has 100,000s of groups, held until every tensor was seen: no heap block of their own
  // once placed.
  struct Group {
    const rules::Layout* layout = nullptr;
    std::string_view name;                       // in names_
    std::vector<std::optional<Target>> members;  // per member of the layout, in layout order
    // Once placed, only each member's source is kept (to name it when a member comes twice), not
    // the members: from placed_sources_[sources], one per member.
    std::size_t sources = kNotPlaced;
    std::uint32_t present = 0;
    State state = State::open;
  };

  // A group is known by its layout and name. The index is a table of group numbers (open
  // addressing, linear probing, at most half full): 4 bytes a slot instead of a hash node and a
  // bucket per group; a probe compares the group's own layout and name.
  static std::size_t hash(const rules::Layout* layout, std::string_view name) noexcept {
    return std::hash<std::string_view>{}(name) ^ std::hash<const void*>{}(layout);
  }
  std::size_t find(const rules::Layout* layout, std::string_view name) const;  // kNoGroup when absent
  void index(std::size_t group);  // adds groups_[group] to the table, which it grows when half full
  static constexpr std::size_t kNoGroup = static_cast<std::size_t>(-1);

  // The divisor of each dim of each member of `layout` (a number, or a parameter's value); null
  // when a parameter gives 0 (reported once per layout, naming the member and the first group).
  using Divisors = std::vector<std::vector<std::uint64_t>>;
  const Divisors* divisors(const Group& group, Placer& placer);
  void place(Group& group, Placer& placer);

  const rules::Params& params_;
  std::unordered_map<const rules::Layout*, std::optional<Divisors>> divisors_;

  plan::NameArena names_;                    // the groups' names
  std::vector<std::size_t> placed_sources_;  // of the placed groups' members (Group::sources)
  std::deque<Group> groups_;
  std::vector<std::uint32_t> slots_;  // group number + 1, 0 for an empty slot; a power of two long
  std::size_t last_ = 0;              // the group of the previous member
};

}  // namespace shardwise::plan::detail
