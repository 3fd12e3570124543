#include "plan/row_permutations.hpp"

#include <fmt/format.h>

namespace shardwise::plan::detail {

std::optional<std::uint32_t> RowPermutations::add(const Source& source, const rules::TransformRule& rule,
                                                  Diagnostics& problems) {
  const std::string where = fmt::format("{} ({})", rule.rule.label, rule.rule.where.str());
  std::uint64_t heads = rule.heads;
  std::string heads_text = std::to_string(heads);
  if (!rule.heads_param.empty()) {
    const auto value = params_.find(rule.heads_param);
    if (value == params_.end()) {
      problems.add(fmt::format("{}: {} needs the parameter {}, which has no value", source.name, where,
                               rule.heads_param));
      return std::nullopt;
    }
    heads = value->second;
    heads_text = fmt::format("{}={}", rule.heads_param, heads);
  }
  if (source.shape.empty()) {
    problems.add(fmt::format("{}: {} permutes rows, but the tensor has no dims", source.name, where));
    return std::nullopt;
  }
  const std::uint64_t rows = source.shape[0];
  if (heads == 0 || rows % heads != 0 || rows / heads % 2 != 0) {
    problems.add(fmt::format(
        "{}: {} cannot permute {} rows in {} heads: {} (shape {})", source.name, where, rows, heads_text,
        heads == 0          ? "the head count is 0"
        : rows % heads != 0 ? fmt::format("{} is not a multiple of {}", rows, heads)
                            : fmt::format("a head of {} rows has no halves of equal size", rows / heads),
        st::shape_text(source.shape)));
    return std::nullopt;
  }
  const std::size_t label = labels_(rule.rule);
  const auto to = rule.rope_to == rules::TransformRule::RopeOrder::half_split
                      ? transform::RopeOrder::half_split
                      : transform::RopeOrder::interleaved;
  for (std::size_t i = 0; i < plan_.permutations.size(); ++i) {
    const RowPermutation& p = plan_.permutations[i];
    if (p.rule == label && p.heads == heads && p.to == to) return static_cast<std::uint32_t>(i);
  }
  plan_.permutations.push_back(RowPermutation{to, heads, label});
  return static_cast<std::uint32_t>(plan_.permutations.size() - 1);
}

}  // namespace shardwise::plan::detail
