#include "rules/matcher.hpp"

#include <algorithm>

namespace shardwise::rules::detail {

const RE2::Options& rule_regex_options() {
  static const RE2::Options options = [] {
    RE2::Options o;
    o.set_log_errors(false);
    return o;
  }();
  return options;
}

OrderedMatcher::OrderedMatcher() = default;
OrderedMatcher::OrderedMatcher(OrderedMatcher&&) noexcept = default;
OrderedMatcher& OrderedMatcher::operator=(OrderedMatcher&&) noexcept = default;
OrderedMatcher::~OrderedMatcher() = default;

std::optional<std::string> OrderedMatcher::add(const std::string& pattern) {
  auto re = std::make_unique<RE2>(pattern, rule_regex_options());
  if (!re->ok()) return re->error();
  patterns_.push_back(std::move(re));
  return std::nullopt;
}

bool OrderedMatcher::compile() {
  // One pattern alone is searched faster than a set of one (no list of hits to collect).
  if (patterns_.size() <= 1) return true;
  RE2::Options options = rule_regex_options();
  options.set_max_mem(std::int64_t{64} << 20);  // the set's DFA of hundreds of rules fits easily
  set_ = std::make_unique<RE2::Set>(options, RE2::UNANCHORED);
  for (const auto& re : patterns_) {
    std::string error;
    if (set_->Add(re->pattern(), &error) < 0) {  // cannot happen: each pattern compiled alone
      set_.reset();
      return false;
    }
  }
  use_set_ = set_->Compile();
  if (!use_set_) set_.reset();
  return use_set_;
}

std::optional<std::size_t> OrderedMatcher::first_match(std::string_view text, Expect expect) const {
  const re2::StringPiece piece(text.data(), text.size());
  if (use_set_) {
    RE2::Set::ErrorInfo info{RE2::Set::kNoError};
    // Without a list of hits RE2 allocates nothing and stops at the earliest match.
    if (expect == Expect::rarely && !set_->Match(piece, nullptr, &info) && info.kind == RE2::Set::kNoError)
      return std::nullopt;
    thread_local std::vector<int> hits;  // reused across calls to save on reallocation
    hits.clear();
    info.kind = RE2::Set::kNoError;
    if (set_->Match(piece, &hits, &info)) {
      return static_cast<std::size_t>(*std::min_element(hits.begin(), hits.end()));
    }
    if (info.kind == RE2::Set::kNoError) return std::nullopt;
    // The DFA gave up (memory budget): fall through to the one-by-one scan.
  }
  for (std::size_t i = 0; i < patterns_.size(); ++i) {
    if (RE2::PartialMatch(piece, *patterns_[i])) return i;
  }
  return std::nullopt;
}

}  // namespace shardwise::rules::detail
