// The one-pass search of accepts_scan.hpp: the conditions' regexes in one RE2::Set, rebuilt as
// conditions find their witnesses.
#include "rules/accepts_scan.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <re2/re2.h>
#include <re2/set.h>

#include <shardwise/core/parallel.hpp>

#include "rules/matcher.hpp"

namespace shardwise::rules::detail {

namespace {

bool dtype_fits(const AcceptsCondition& condition, st::DType dtype) {
  return condition.dtypes.empty() ||
         std::find(condition.dtypes.begin(), condition.dtypes.end(), dtype) != condition.dtypes.end();
}

class WitnessScan {
 public:
  explicit WitnessScan(std::span<const AcceptsCondition* const> conditions)
      : conditions_(conditions), found_(conditions.size()), pattern_of_(conditions.size(), kNone) {
    for (std::size_t i = 0; i < conditions.size(); ++i) {
      const AcceptsCondition& condition = *conditions[i];
      if (!condition.re) continue;
      // Conditions of several files often search with the same regex: it is searched once.
      const auto same = std::find_if(patterns_.begin(), patterns_.end(), [&](const Pattern& pattern) {
        return pattern.re->pattern() == condition.re->pattern();
      });
      pattern_of_[i] = static_cast<std::size_t>(same - patterns_.begin());
      if (same == patterns_.end()) patterns_.push_back({condition.re.get(), 0});
      ++patterns_[pattern_of_[i]].open;
    }
    matched_.resize(patterns_.size());
    open_ = conditions.size();
  }

  // With `stop`, the scan also ends once it is set (checked every kStopEvery tensors).
  std::vector<Witnesses> run(std::span<const TensorHeader> tensors, const std::atomic<bool>* stop = nullptr) {
    for (std::size_t i = 0; i < tensors.size() && open_ > 0; ++i) {
      if (stop != nullptr && i % kStopEvery == 0 && stop->load(std::memory_order_relaxed)) break;
      visit(tensors[i]);
    }
    return std::move(found_);
  }

  bool all_held() const noexcept { return open_ == 0; }

 private:
  static constexpr std::size_t kNone = SIZE_MAX;
  static constexpr std::size_t kStopEvery = 1024;

  struct Pattern {
    const RE2* re;     // compiled alone, by the condition that brought it
    std::size_t open;  // conditions without a witness that search with it
  };

  void visit(const TensorHeader& tensor) {
    bool searched = false;
    for (std::size_t i = 0; i < conditions_.size(); ++i) {
      Witnesses& found = found_[i];
      if (found.holds != nullptr) continue;
      const AcceptsCondition& condition = *conditions_[i];
      const bool dtype_ok = dtype_fits(condition, tensor.dtype);
      if (!condition.re) {
        if (dtype_ok) close(i, tensor);
        continue;
      }
      // Once a name matched without the dtype, only a tensor of the condition's dtypes tells more.
      if (!dtype_ok && found.name_only != nullptr) continue;
      if (!searched) {
        search(tensor.name);
        searched = true;
      }
      if (matched_[pattern_of_[i]] == 0) continue;
      if (dtype_ok) {
        close(i, tensor);
      } else {
        found.name_only = &tensor;
      }
    }
  }

  void close(std::size_t condition, const TensorHeader& tensor) {
    found_[condition].holds = &tensor;
    --open_;
    if (pattern_of_[condition] != kNone && --patterns_[pattern_of_[condition]].open == 0) stale_ = true;
  }

  // matched_[p]: whether pattern p matches somewhere in `name`, for every pattern still searched.
  void search(std::string_view name) {
    if (stale_) rebuild();
    std::fill(matched_.begin(), matched_.end(), 0);
    const re2::StringPiece piece(name.data(), name.size());
    if (set_) {
      RE2::Set::ErrorInfo info{RE2::Set::kNoError};
      // Most names match none of the patterns left (those of conditions not met): asking whether
      // any does is one search without a list of hits to allocate.
      if (!set_->Match(piece, nullptr, &info) && info.kind == RE2::Set::kNoError) return;
      hits_.clear();
      info.kind = RE2::Set::kNoError;
      if (set_->Match(piece, &hits_, &info)) {
        for (const int hit : hits_) matched_[set_patterns_[static_cast<std::size_t>(hit)]] = 1;
        return;
      }
      if (info.kind == RE2::Set::kNoError) return;
      // The DFA gave up (memory budget): each pattern alone gives the same answers.
    }
    for (std::size_t p = 0; p < patterns_.size(); ++p) {
      if (patterns_[p].open > 0 && RE2::PartialMatch(piece, *patterns_[p].re)) matched_[p] = 1;
    }
  }

  // The set of the patterns some open condition still searches with. A pattern leaves it when its
  // last condition is met: at most one rebuild per pattern, and the patterns met by the first
  // names stop costing a search in every later one.
  void rebuild() {
    stale_ = false;
    set_.reset();
    set_patterns_.clear();
    for (std::size_t p = 0; p < patterns_.size(); ++p) {
      if (patterns_[p].open > 0) set_patterns_.push_back(p);
    }
    if (set_patterns_.size() < 2) return;  // one pattern is searched faster alone
    RE2::Options options = rule_regex_options();
    options.set_max_mem(std::int64_t{64} << 20);
    auto set = std::make_unique<RE2::Set>(options, RE2::UNANCHORED);
    for (const std::size_t p : set_patterns_) {
      if (set->Add(patterns_[p].re->pattern(), nullptr) < 0) return;  // cannot happen: each compiled alone
    }
    if (set->Compile()) set_ = std::move(set);
  }

  std::span<const AcceptsCondition* const> conditions_;
  std::vector<Witnesses> found_;
  std::vector<std::size_t> pattern_of_;  // per condition: its index in patterns_, or kNone
  std::vector<Pattern> patterns_;
  std::size_t open_ = 0;  // conditions without a witness

  bool stale_ = true;  // set_ is to be (re)built before the next search
  std::unique_ptr<RE2::Set> set_;
  std::vector<std::size_t> set_patterns_;  // per entry of set_: its pattern
  std::vector<int> hits_;                  // reused across searches to save on reallocation
  std::vector<char> matched_;              // per pattern
};

// The witnesses of the whole list from those of its first half and of the rest: the first half's
// where it has one; a name-only match of the rest counts only when the first half has no witness
// at all (a scan stops looking for one once its condition holds).
std::vector<Witnesses> combine(std::vector<Witnesses> first, const std::vector<Witnesses>& rest) {
  for (std::size_t i = 0; i < first.size(); ++i) {
    Witnesses& found = first[i];
    if (found.holds == nullptr && found.name_only == nullptr) found.name_only = rest[i].name_only;
    if (found.holds == nullptr) found.holds = rest[i].holds;
  }
  return first;
}

}  // namespace

std::vector<Witnesses> find_witnesses(std::span<const AcceptsCondition* const> conditions,
                                      std::span<const TensorHeader> tensors, std::size_t split_from) {
  if (tensors.size() < split_from || tensors.size() < 2) return WitnessScan(conditions).run(tensors);
  const std::size_t half = tensors.size() / 2;
  std::atomic<bool> first_all_held{false};  // the rest's answers are then not needed
  std::vector<Witnesses> first;
  std::vector<Witnesses> rest;
  run_beside(
      [&] {
        WitnessScan scan(conditions);
        first = scan.run(tensors.first(half));
        first_all_held.store(scan.all_held(), std::memory_order_relaxed);
      },
      [&] { rest = WitnessScan(conditions).run(tensors.subspan(half), &first_all_held); });
  return combine(std::move(first), rest);
}

}  // namespace shardwise::rules::detail
