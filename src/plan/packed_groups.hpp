#pragma once
// Internal to the planner: members of packed layouts (the rules' `layouts:`) are collected by
// (layout, group) while the checkpoint is visited, because a group may span files. A complete
// group is checked (no member twice, dtypes, one logical [out, in] shape) and placed as a whole;
// groups still incomplete when every tensor has been seen are reported.

#include <string>
#include <unordered_map>
#include <vector>

#include "plan/placer.hpp"

namespace shardwise::plan::detail {

class PackedGroups {
 public:
  // Records one member, and places its group as soon as it is complete. A member given twice (two
  // sources with the same output) is reported here and its group is not placed.
  void add(const rules::Decision& decision, Target target, Placer& placer);
  // Once every tensor was seen: reports the groups still missing members, naming what is there.
  void report_incomplete(Placer& placer) const;

 private:
  enum class State { open, placed, broken };
  struct Group {
    const rules::Layout* layout = nullptr;
    std::string name;
    std::vector<std::optional<Target>> members;  // per member of the layout, in layout order
    std::size_t present = 0;
    State state = State::open;
  };

  static void place(Group& group, Placer& placer);

  std::vector<Group> groups_;
  std::unordered_map<std::string, std::size_t> index_;  // layout name + '\n' + group name -> groups_
  std::size_t last_ = 0;                                // the group of the previous member
};

}  // namespace shardwise::plan::detail
