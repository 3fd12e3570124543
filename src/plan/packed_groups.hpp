#pragma once
// Internal to the planner: members of packed layouts (the rules' `layouts:`) are collected by
// (layout, group) while the checkpoint is visited, because a group may span files; once every
// tensor has been seen, each group is checked (complete, no member twice, dtypes, one logical
// [out, in] shape) and placed as a whole.

#include <string>
#include <unordered_map>
#include <vector>

#include "plan/placer.hpp"

namespace shardwise::plan::detail {

class PackedGroups {
 public:
  // Records one member. A member given twice (two sources with the same output) is reported here
  // and its group is not placed.
  void add(const rules::Decision& decision, Target target, Placer& placer);
  // Checks and places every group, in the order their first member was seen.
  void place_all(Placer& placer);

 private:
  struct Group {
    const rules::Layout* layout = nullptr;
    std::string name;
    std::vector<std::optional<Target>> members;  // per member of the layout, in layout order
    bool broken = false;                         // already reported
  };

  void place(const Group& group, Placer& placer) const;

  std::vector<Group> groups_;
  std::unordered_map<std::string, std::size_t> index_;  // layout name + '\n' + group name -> groups_
};

}  // namespace shardwise::plan::detail
