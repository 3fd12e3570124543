#include <shardwise/verify/output_names.hpp>

#include <charconv>

namespace shardwise::verify {

namespace {

// A rank no real plan reaches: its decimal text marks where the template puts the rank.
constexpr std::uint64_t kMarkerRank = 9'876'543'210'123'456'789ULL;

std::optional<std::uint64_t> parse_rank(std::string_view digits) {
  if (digits.empty() || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

// True when `name` is parts[0] + digits + parts[1] + digits + ... + parts[n-1].
bool matches_with(std::string_view name, const std::vector<std::string>& parts, std::string_view digits) {
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (name.substr(0, parts[i].size()) != parts[i]) return false;
    name.remove_prefix(parts[i].size());
    if (i + 1 == parts.size()) break;
    if (name.substr(0, digits.size()) != digits) return false;
    name.remove_prefix(digits.size());
  }
  return name.empty();
}

}  // namespace

OutputNamePattern OutputNamePattern::from_rules(const rules::Rules& rules, std::uint64_t mp) {
  const std::string sample = rules.output_file(kMarkerRank, mp);
  const std::string marker = std::to_string(kMarkerRank);
  OutputNamePattern pattern;
  std::size_t from = 0;
  for (std::size_t at = sample.find(marker); at != std::string::npos; at = sample.find(marker, from)) {
    pattern.parts_.push_back(sample.substr(from, at - from));
    from = at + marker.size();
  }
  pattern.parts_.push_back(sample.substr(from));
  return pattern;
}

std::optional<std::uint64_t> OutputNamePattern::rank_of(std::string_view name) const {
  if (parts_.size() == 1) return name == parts_[0] ? std::optional<std::uint64_t>(0) : std::nullopt;
  if (name.substr(0, parts_[0].size()) != parts_[0]) return std::nullopt;
  const std::string_view rest = name.substr(parts_[0].size());
  std::size_t run = 0;
  while (run < rest.size() && rest[run] >= '0' && rest[run] <= '9') ++run;
  // The literal after the rank may itself start with digits: try every split of the run.
  for (std::size_t length = run; length > 0; --length) {
    const std::string_view digits = rest.substr(0, length);
    const auto rank = parse_rank(digits);
    if (rank && matches_with(name, parts_, digits)) return rank;
  }
  return std::nullopt;
}

}  // namespace shardwise::verify
