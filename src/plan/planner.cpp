// plan_checkpoint: visits the checkpoint's tensors in the reference converter's order, lets the
// rules decide each, and places them: plain tensors at once, packed members once their group is
// complete. Every problem is collected; the plan is returned only when there is none.

#include <shardwise/plan/planner.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "plan/decision_stream.hpp"
#include "plan/ownership_scopes.hpp"
#include "plan/packed_groups.hpp"
#include "plan/placer.hpp"

namespace shardwise::plan {
namespace {

using detail::Placer;
using detail::Target;

void place_plain(Target& target, Placer& placer) {
  const st::DType dtype = placer.source(target.source).dtype;
  if (target.owner) {
    placer.defer_owned(target, dtype, Cast::none);
  } else if (target.split == rules::Split::replicate) {
    placer.add_everywhere(target, dtype, Cast::none);
  } else {
    // A plain tensor is the logical weight itself: [out, in].
    const int dim = target.split == rules::Split::out ? 0 : 1;
    placer.add_split(target, dim, 1, target.split, dtype, Cast::none);
  }
}

// The parameters given by the caller, without mp (the plan's own value).
rules::Params given_params(const PlanOptions& options) {
  rules::Params given = options.params;
  given.erase("mp");
  return given;
}

Plan empty_plan(const st::Checkpoint& checkpoint, const rules::Rules& rules, const PlanOptions& options) {
  Plan plan;
  plan.model_parallel = options.model_parallel;
  rules::Params resolved = rules.resolve_params(given_params(options));
  resolved["mp"] = options.model_parallel;
  plan.params.insert(resolved.begin(), resolved.end());
  plan.rules_name = rules.display_name();
  plan.input_root = checkpoint.root();
  plan.input_files.reserve(checkpoint.files().size());
  for (const st::File& file : checkpoint.files()) {
    plan.input_files.push_back(std::filesystem::absolute(file.path()).lexically_normal().string());
  }
  plan.input_bytes = checkpoint.total_bytes();
  plan.outputs.resize(options.model_parallel);
  for (std::uint64_t rank = 0; rank < options.model_parallel; ++rank) {
    plan.outputs[rank].rank = rank;
    plan.outputs[rank].file = rules.output_file(rank, options.model_parallel);
  }
  return plan;
}

// Sorts each rank's tensors by output name and reports names produced twice on one rank (once per
// pair of sources, with the ranks where they meet).
void finish_outputs(Plan& plan, Placer& placer) {
  std::map<std::tuple<std::string, std::size_t, std::size_t>, std::vector<std::uint64_t>> clashes;
  const auto by_name = [](const PlannedTensor& a, const PlannedTensor& b) {
    return std::tie(a.name, a.source) < std::tie(b.name, b.source);
  };
  for (OutputFile& out : plan.outputs) {
    // Tensors arrive in source-name order, which renames seldom disturb, then the owned tensors
    // (placed last, also in order): often two sorted runs to merge, not a sort.
    const auto end = out.tensors.end();
    const auto unsorted = std::is_sorted_until(out.tensors.begin(), end, by_name);
    if (std::is_sorted(unsorted, end, by_name)) {
      std::inplace_merge(out.tensors.begin(), unsorted, end, by_name);
    } else {
      std::sort(out.tensors.begin(), end, by_name);
    }
    for (std::size_t i = 1; i < out.tensors.size(); ++i) {
      const PlannedTensor& a = out.tensors[i - 1];
      const PlannedTensor& b = out.tensors[i];
      if (a.name == b.name) clashes[{a.name, a.source, b.source}].push_back(out.rank);
    }
  }
  for (const auto& [key, ranks] : clashes) {
    const auto& [name, first, second] = key;
    const std::string where = ranks.size() == plan.model_parallel && ranks.size() > 1
                                  ? std::string("every rank")
                                  : fmt::format("rank {}", detail::format_ranks(ranks));
    placer.problems().add(fmt::format("{}: output name produced twice on {}, by {} and by {}", name, where,
                                      placer.describe(first), placer.describe(second)));
  }
}

void find_side_files(Plan& plan, const rules::Rules& rules) {
  for (const std::string& name : rules.side_files()) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(std::filesystem::path(plan.input_root) / name, ec)) {
      plan.side_files.push_back(name);
    }
  }
}

}  // namespace

Plan plan_checkpoint(const st::Checkpoint& checkpoint, const rules::Rules& rules,
                     const PlanOptions& options) {
  if (options.model_parallel == 0 || options.model_parallel > kMaxModelParallel) {
    throw Error(ErrorKind::usage, fmt::format("model parallelism must be between 1 and {}, not {}",
                                              kMaxModelParallel, options.model_parallel));
  }
  Plan plan = empty_plan(checkpoint, rules, options);
  rules::Params params(plan.params.begin(), plan.params.end());
  Diagnostics problems(ErrorKind::input);
  Placer placer(plan, problems, options.model_parallel);
  detail::PackedGroups groups(checkpoint.tensors().size());
  detail::OwnershipScopes scopes(given_params(options), options.model_parallel);
  detail::RuleLabels labels(plan.rule_labels);

  detail::DecisionStream decisions(checkpoint, rules, params);

  plan.sources.reserve(checkpoint.tensors().size());
  for (const st::TensorRef& ref : checkpoint.tensors()) {
    const st::TensorInfo& info = *ref.info;
    rules::Decision& decision = decisions.next();
    if (decision.kind == rules::Decision::Kind::skip) {
      plan.skipped.push_back(Skipped{info.name, checkpoint.file_name(ref.file),
                                     plan.rule_labels[labels(*decision.rule)], std::move(decision.reason)});
      continue;
    }
    if (decision.kind == rules::Decision::Kind::unmatched) {
      problems.add(fmt::format("{} ({}): no rule places it: {}", info.name, checkpoint.file_name(ref.file),
                               decision.reason));
      continue;
    }
    const st::File& file = checkpoint.files()[ref.file];
    plan.sources.push_back(
        Source{ref.file, info.name, info.dtype, info.shape, file.absolute_offset(info), info.bytes()});
    Target target{plan.sources.size() - 1, std::move(decision.output), labels(*decision.rule), decision.split,
                  std::nullopt};
    if (decision.owner)
      target.owner = detail::Owner{decision.owner->index, scopes.add(*decision.owner, target.output)};
    if (decision.layout != nullptr) {
      groups.add(decision, std::move(target), placer);
    } else {
      place_plain(target, placer);
    }
  }
  groups.report_incomplete(placer);
  scopes.check(problems, plan.notes);
  placer.place_owned(scopes);
  finish_outputs(plan, placer);
  find_side_files(plan, rules);
  problems.check(
      fmt::format("cannot plan {} for mp={} with {}", plan.input_root, plan.model_parallel, plan.rules_name));
  return plan;
}

}  // namespace shardwise::plan
