#pragma once
// Internal to the planner: tensors that a skip rule with `companion_of:` leaves out because a
// transform of another tensor reads them (a GPTQ `scales`, an FP8 `weight_scale_inv`). Once the
// transforms have found their companions, one that none read is an orphan (the tensor it belongs
// to is absent, or not transformed): a problem naming both, so that no input is dropped unseen.

#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/name_template.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

namespace shardwise::plan::detail {

class CompanionSkips {
 public:
  // `name` (in `file`) skipped by `rule` (its label with FILE:LINE) as a companion of the tensor
  // `owner` names (`{name}`, `{stem}` of `name`).
  void add(std::string name, std::string file, std::string rule, const rules::NameTemplate& owner);
  // After the transforms' companions are resolved (Plan::companions): every skipped companion no
  // transform reads is a problem.
  void report(const Plan& plan, const st::Checkpoint& checkpoint, Diagnostics& problems) const;

 private:
  struct Entry {
    std::string name, file, rule, owner;
  };
  std::vector<Entry> entries_;
};

}  // namespace shardwise::plan::detail
