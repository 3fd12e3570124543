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
  // A group is known by its layout and name: where the index looks it up. The deciding thread
  // computes it for each member (DecisionStream), ahead of the placing thread.
  static std::size_t hash(const rules::Layout* layout, std::string_view name) noexcept {
    return std::hash<std::string_view>{}(name) ^ std::hash<const void*>{}(layout);
  }
  // Starts loading the index's slot for `hash`: the index of a Pro-sized checkpoint's groups does
  // not stay cached, and looking up each new group would otherwise wait for memory.
  void prefetch(std::size_t hash) const noexcept {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]);
  }
  // Records one member (`hash`: of its layout and decision.group), and places its group as soon as
  // it is complete. A member given twice (two sources with the same output) is reported here and
  // its group is not placed. `same_as_last`: the member is of the group of the last member added
  // (known to the caller without comparing names), which is then not looked up.
  void add(const rules::Decision& decision, std::size_t hash, bool same_as_last, Target target,
           Placer& placer);
  // Once every tensor was seen: reports the groups still missing members, naming what is there.
  void report_incomplete(Placer& placer) const;
  // Frees the groups (100,000s) once they were reported: before the owned tensors are placed.
  void clear();

 private:
  enum class State : std::uint8_t { open, placed, broken };
  // A checkpoint has 100,000s of groups, held until every tensor was seen: 32 bytes each and no heap
  // block of their own; an open group's members wait in open_ (groups complete as their members
  // come, so few are open at once and their slots are reused).
  struct Group {
    const rules::Layout* layout = nullptr;
    // A prefix of its first member's source name (the plan's, which outlives the groups), else in names_.
    std::string_view name;
    // Open (or broken before it was complete): its entry in open_. Placed: where its members'
    // sources start in placed_sources_, one per member, kept to name a member that comes twice.
    std::uint32_t at = 0;
    State state = State::open;
  };
  struct Open {
    std::vector<std::optional<Target>> members;  // per member of the layout, in layout order
    std::uint32_t present = 0;
  };

  // The index is a table of group numbers (open addressing, linear probing, at most half full):
  // 4 bytes a slot instead of a hash node and a bucket per group; a probe compares the group's own
  // layout and name.
  // kNoGroup when absent.
  std::size_t find(const rules::Layout* layout, std::string_view name, std::size_t hash) const;
  void index(std::size_t group);  // adds groups_[group] to the table, which it grows when half full
  static constexpr std::size_t kNoGroup = static_cast<std::size_t>(-1);

  // The divisor of each dim of each member of `layout` (a number, or a parameter's value); null
  // when a parameter gives 0 (reported once per layout, naming the member and the first group).
  using Divisors = std::vector<std::vector<std::uint64_t>>;
  const Divisors* divisors(const Group& group, Placer& placer);
  void place(const Group& group, std::vector<std::optional<Target>>& members, Placer& placer);
  // The group's name as Group::name keeps it.
  std::string_view group_name(std::string_view name, std::size_t source, const Placer& placer);
  std::uint32_t open_group(const rules::Layout& layout);  // an entry of open_ for a new group

  const rules::Params& params_;
  std::unordered_map<const rules::Layout*, std::optional<Divisors>> divisors_;

  plan::NameArena names_;                      // the names of groups not found in their source's name
  std::vector<std::uint32_t> placed_sources_;  // of the placed groups' members (Group::at)
  std::deque<Group> groups_;
  std::vector<Open> open_;                // the open groups' members (Group::at)
  std::vector<std::uint32_t> free_open_;  // entries of open_ whose group was placed, for reuse
  std::vector<std::uint32_t> slots_;      // group number + 1, 0 for an empty slot; a power of two long
  std::size_t last_ = 0;                  // the group of the previous member
};

}  // namespace shardwise::plan::detail
