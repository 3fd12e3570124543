#include "plan/composite.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace shardwise::plan::detail {
namespace {

struct Member {
  const rules::FusePart* part = nullptr;
  PlannedTensor tensor;
};

std::string part_name(const rules::FuseRule& rule, std::size_t part) {
  if (part >= rule.parts.size()) return "?";
  return rule.parts[part].empty() ? std::string("the part") : rule.parts[part];
}

std::string where(const rules::FuseRule& rule) {
  return fmt::format("{} at {}", rule.rule.label, rule.rule.where.str());
}

// The shape a block of parts has once they are concatenated along `dim`; nullopt (reported) when
// the parts disagree on a dim other than `dim`, or have no such dim.
std::optional<st::Shape> block_shape(const std::string& output, std::uint64_t rank,
                                     const rules::FuseRule& rule, const std::vector<Member>& block,
                                     const Plan& plan, Diagnostics& problems) {
  const auto dim = static_cast<std::size_t>(rule.dim);
  const PlannedTensor& first = block.front().tensor;
  st::Shape shape = first.shape;
  if (dim >= shape.size()) {
    problems.add(fmt::format(
        "{} on rank {} ({}): part {} ({}) is {}{}, which has no dim {} to concatenate along", output, rank,
        where(rule), part_name(rule, block.front().part->part), plan.sources[first.source].name,
        st::dtype_name(first.dtype), st::shape_text(first.shape), rule.dim));
    return std::nullopt;
  }
  shape[dim] = 0;
  for (const Member& m : block) {
    const PlannedTensor& t = m.tensor;
    bool fits = t.dtype == first.dtype && t.shape.size() == first.shape.size();
    for (std::size_t d = 0; fits && d < t.shape.size(); ++d) fits = d == dim || t.shape[d] == first.shape[d];
    if (!fits) {
      problems.add(fmt::format(
          "{} on rank {} ({}): part {} ({}) is {}{} as cut for the rank, which does not fit part {} ({}{}): "
          "parts must agree on dtype and on every dim but {}",
          output, rank, where(rule), part_name(rule, m.part->part), plan.sources[t.source].name,
          st::dtype_name(t.dtype), st::shape_text(t.shape), part_name(rule, block.front().part->part),
          st::dtype_name(first.dtype), st::shape_text(first.shape), rule.dim));
      return std::nullopt;
    }
    shape[dim] += t.shape[dim];
  }
  return shape;
}

// Checks one index's (or the only) block: every part of the rule exactly once.
bool check_block(const std::string& output, std::uint64_t rank, const rules::FuseRule& rule,
                 const std::vector<Member>& block, const Plan& plan, Diagnostics& problems) {
  const std::string at = rule.stack
                             ? fmt::format("{} index {} on rank {}", output, block.front().part->index, rank)
                             : fmt::format("{} on rank {}", output, rank);
  std::vector<std::string> present;
  bool ok = true;
  for (std::size_t i = 0; i < block.size(); ++i) {
    if (i > 0 && block[i].part->part == block[i - 1].part->part) {
      problems.add(fmt::format("{} ({}): part {} given twice, by {} and by {}", at, where(rule),
                               part_name(rule, block[i].part->part),
                               plan.sources[block[i - 1].tensor.source].name,
                               plan.sources[block[i].tensor.source].name));
      ok = false;
    } else {
      present.push_back(part_name(rule, block[i].part->part));
    }
  }
  for (std::size_t p = 0; p < rule.parts.size(); ++p) {
    const bool found =
        std::any_of(block.begin(), block.end(), [&](const Member& m) { return m.part->part == p; });
    if (!found) {
      problems.add(
          fmt::format("{} ({}): missing part {} (present: {})", at, where(rule), part_name(rule, p),
                      present.empty() ? std::string("none") : fmt::format("{}", fmt::join(present, ", "))));
      ok = false;
    }
  }
  return ok;
}

}  // namespace

void Composer::compose(Plan& plan, RuleLabels& labels, Diagnostics& problems) const {
  if (parts_.empty()) return;
  std::map<std::string, std::set<std::uint64_t>> stacked_indices;  // every rank's, per output
  std::map<std::string, const rules::FuseRule*> stacked_rules;
  for (OutputFile& out : plan.outputs) {
    std::map<std::string, std::vector<Member>> groups;
    std::vector<PlannedTensor> kept;
    kept.reserve(out.tensors.size());
    for (PlannedTensor& t : out.tensors) {
      const auto it = parts_.find(t.source);
      if (it == parts_.end()) {
        kept.push_back(std::move(t));
      } else {
        groups[it->second.output].push_back(Member{&it->second, std::move(t)});
      }
    }
    for (auto& [output, members] : groups) {
      const rules::FuseRule& rule = *members.front().part->rule;
      bool ok = true;
      for (const Member& m : members) {
        if (m.part->rule != &rule) {
          problems.add(fmt::format("{}: two fuse rules make this output, {} and {} (from {} and {})", output,
                                   where(rule), where(*m.part->rule),
                                   plan.sources[members.front().tensor.source].name,
                                   plan.sources[m.tensor.source].name));
          ok = false;
          break;
        }
        if (m.part->part >= rule.parts.size()) {
          problems.add(fmt::format("{} on rank {} ({}): {} matches the rule but is not one of its parts ({})",
                                   output, out.rank, where(rule), plan.sources[m.tensor.source].name,
                                   fmt::join(rule.parts, ", ")));
          ok = false;
        } else if (m.tensor.companion != kNoCompanion) {
          problems.add(
              fmt::format("{} on rank {} ({}): part {} ({}) has a block-scaled transform, which a fused "
                          "output cannot stream",
                          output, out.rank, where(rule), part_name(rule, m.part->part),
                          plan.sources[m.tensor.source].name));
          ok = false;
        }
      }
      if (!ok) continue;
      std::stable_sort(members.begin(), members.end(), [](const Member& a, const Member& b) {
        return std::tie(a.part->index, a.part->part) < std::tie(b.part->index, b.part->part);
      });
      // Blocks: runs of one index (one block when the rule does not stack).
      std::vector<std::pair<std::size_t, std::size_t>> blocks;
      for (std::size_t i = 0; i < members.size();) {
        std::size_t j = i + 1;
        while (rule.stack && j < members.size() && members[j].part->index == members[i].part->index) ++j;
        if (!rule.stack) j = members.size();
        blocks.emplace_back(i, j);
        i = j;
      }
      Composite composite{labels(rule.rule), rule.dim, rule.stack, rule.parts.size(), {}, {}};
      std::optional<st::Shape> shape;
      for (const auto& [begin, end] : blocks) {
        const std::vector<Member> block(
            std::make_move_iterator(members.begin() + static_cast<std::ptrdiff_t>(begin)),
            std::make_move_iterator(members.begin() + static_cast<std::ptrdiff_t>(end)));
        if (!check_block(output, out.rank, rule, block, plan, problems)) {
          ok = false;
          continue;
        }
        const auto this_shape = block_shape(output, out.rank, rule, block, plan, problems);
        if (!this_shape) {
          ok = false;
          continue;
        }
        if (shape && *shape != *this_shape) {
          problems.add(
              fmt::format("{} on rank {} ({}): index {} gives {} where index {} gives {}: stacked indices "
                          "must have one shape",
                          output, out.rank, where(rule), block.front().part->index,
                          st::shape_text(*this_shape), composite.indices.front(), st::shape_text(*shape)));
          ok = false;
          continue;
        }
        shape = this_shape;
        if (rule.stack) {
          if (!composite.indices.empty() && block.front().part->index != composite.indices.back() + 1) {
            problems.add(fmt::format("{} on rank {} ({}): missing indices {}-{} between {} and {}", output,
                                     out.rank, where(rule), composite.indices.back() + 1,
                                     block.front().part->index - 1, composite.indices.back(),
                                     block.front().part->index));
            ok = false;
          }
          composite.indices.push_back(block.front().part->index);
          stacked_indices[output].insert(block.front().part->index);
          stacked_rules[output] = &rule;
        }
        for (const Member& m : block) composite.parts.push_back(m.tensor);
      }
      if (!ok || !shape) continue;
      if (rule.stack) shape->insert(shape->begin(), composite.indices.size());
      std::uint64_t bytes = 0;
      for (const PlannedTensor& part : composite.parts) bytes += part.bytes;
      const PlannedTensor& first = composite.parts.front();
      PlannedTensor fused{output,
                          *shape,
                          bytes,
                          first.source,
                          static_cast<std::uint32_t>(composite.rule),
                          Slice{},
                          first.dtype,
                          Cast::none,
                          kNoCompanion,
                          Placement{Placement::Kind::composite, -1, 1, 0, 0, 1},
                          static_cast<std::uint32_t>(plan.composites.size())};
      plan.composites.push_back(std::move(composite));
      kept.push_back(std::move(fused));
    }
    out.tensors = std::move(kept);
  }
  for (const auto& [output, indices] : stacked_indices) {
    const std::uint64_t last = *indices.rbegin();
    if (*indices.begin() != 0 || indices.size() != last + 1) {
      std::vector<std::uint64_t> missing;
      for (std::uint64_t i = 0; i <= last && missing.size() < 8; ++i) {
        if (indices.count(i) == 0) missing.push_back(i);
      }
      problems.add(fmt::format(
          "{} ({}): the stacked indices are not 0..{} on the ranks together: missing {}{}", output,
          where(*stacked_rules[output]), last, fmt::join(missing, ", "), missing.size() == 8 ? ", ..." : ""));
    }
  }
}

}  // namespace shardwise::plan::detail
