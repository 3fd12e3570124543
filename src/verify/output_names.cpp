#include <shardwise/verify/output_names.hpp>

#include <fmt/format.h>

namespace shardwise::verify {

OutputNamePattern OutputNamePattern::from_rules(const rules::Rules& rules, std::uint64_t mp) {
  OutputNamePattern pattern;
  pattern.names_ = rules.output_file_template().with(rules::kMpField, fmt::format("{}", mp));
  return pattern;
}

std::optional<std::uint64_t> OutputNamePattern::rank_of(std::string_view name) const {
  const rules::NameMatch m = names_.match(name);
  if (m.fit != rules::NameMatch::Fit::yes) return std::nullopt;
  return m.values.empty() ? 0 : m.values[rules::kRankField];  // empty: the default template, ""
}

}  // namespace shardwise::verify
