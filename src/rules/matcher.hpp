#pragma once
// An ordered list of regexes compiled for "first rule that matches": one RE2::Set finds the
// candidates of a name in a single pass, then only the winner runs alone, for its captures. Before
// any search, a prefilter (RE2's own, FilteredRE2) may tell that no pattern can match: most names
// contain none of the words a skip or override rule requires, and looking for those words costs
// less than a search.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <re2/re2.h>
#include <re2/set.h>

namespace shardwise::rules::detail {

class OrderedMatcher {
 public:
  OrderedMatcher();
  OrderedMatcher(OrderedMatcher&&) noexcept;
  OrderedMatcher& operator=(OrderedMatcher&&) noexcept;
  ~OrderedMatcher();

  // Compiles `pattern` (unanchored search) and appends it. Returns RE2's error text when the
  // pattern is invalid; the pattern is then not added. add() must not be called after compile().
  std::optional<std::string> add(const std::string& pattern);
  // Compiles the set (a single pattern is searched alone: faster than a set of one). Returns false
  // when RE2 runs out of memory; matching then tries each pattern in turn, which gives the same
  // answers, only slower.
  bool compile();

  std::size_t size() const { return patterns_.size(); }
  const RE2& pattern(std::size_t index) const { return *patterns_[index]; }

  // How often names match one of the patterns: most match no skip or reject rule, and one search
  // that collects no hits says so; nearly every name matches a key rule, whose hits are collected
  // at once. Either gives the same answers.
  enum class Expect { rarely, often };

  // Index of the first pattern (in add() order) that matches somewhere in `text`.
  std::optional<std::size_t> first_match(std::string_view text, Expect expect = Expect::rarely) const;

  // False when no pattern can match `text` (every pattern requires literal strings that `text` does
  // not contain, as RE2's prefilter computes them); true when one may. Made on first use, from any
  // thread, after compile().
  bool may_match(std::string_view text) const;

 private:
  struct Prefilter;
  std::vector<std::unique_ptr<RE2>> patterns_;
  std::unique_ptr<RE2::Set> set_;
  bool use_set_ = false;
  std::unique_ptr<Prefilter> prefilter_;  // made by compile(), filled on first use
};

// The options every rule regex is compiled with (UTF-8, no logging of errors to stderr).
const RE2::Options& rule_regex_options();

}  // namespace shardwise::rules::detail
