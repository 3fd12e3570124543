#include "plan/companion_skips.hpp"

#include <algorithm>
#include <array>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

namespace shardwise::plan::detail {

void CompanionSkips::add(std::string name, std::string file, std::string rule,
                         const rules::NameTemplate& owner) {
  std::array<std::string_view, rules::kCompanionFields.size()> values;
  values[rules::kNameField] = name;
  values[rules::kStemField] = std::string_view(name).substr(0, std::min(name.rfind('.'), name.size()));
  std::string owner_name = owner.expand(values);
  entries_.push_back({std::move(name), std::move(file), std::move(rule), std::move(owner_name)});
}

void CompanionSkips::report(const Plan& plan, const st::Checkpoint& checkpoint, Diagnostics& problems) const {
  if (entries_.empty()) return;
  std::unordered_set<std::string_view> read;  // input names of every companion a transform reads
  for (const Companion& companion : plan.companions) {
    for (const std::size_t source : {companion.source, companion.zeros, companion.group_index}) {
      if (source != kNoSource) read.insert(plan.sources[source].name);
    }
  }
  std::unordered_map<std::string_view, const st::TensorInfo*> inputs;  // built at the first orphan
  for (const Entry& entry : entries_) {
    if (read.count(entry.name) != 0) continue;
    if (inputs.empty()) {
      for (const st::TensorRef& ref : checkpoint.tensors()) inputs.emplace(ref.info->name, ref.info);
    }
    const auto owner = inputs.find(entry.owner);
    const std::string why =
        owner == inputs.end()
            ? fmt::format("{} is not in the checkpoint", entry.owner)
            : fmt::format("no transform of {} ({}{}) reads it", entry.owner,
                          st::dtype_name(owner->second->dtype), st::shape_text(owner->second->shape));
    problems.add(fmt::format("{} ({}): an orphan: {} skips it as a companion of {}, but {}", entry.name,
                             entry.file, entry.rule, entry.owner, why));
  }
}

}  // namespace shardwise::plan::detail
