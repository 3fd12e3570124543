#include "rules/matcher.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <mutex>

#include <re2/filtered_re2.h>

#include <shardwise/core/byte_words.hpp>

namespace shardwise::rules::detail {

const RE2::Options& rule_regex_options() {
  static const RE2::Options options = [] {
    RE2::Options o;
    o.set_log_errors(false);
    return o;
  }();
  return options;
}

namespace {

// Whether `text` is ASCII without capitals (RE2's prefilter strings are lowercase).
bool plain_ascii(std::string_view text) {
  using namespace byte_words;
  // Bytes at or above 0x80; below it, those from 'A' to 'Z' (no carry crosses a byte then).
  const auto found = [](std::uint64_t word) {
    return (word & kHighBits) | ((word + kOnes * (0x80 - 'A')) & ~(word + kOnes * (0x7F - 'Z')) & kHighBits);
  };
  if (text.size() >= 8) return none_found(text, found);
  return std::none_of(text.begin(), text.end(),
                      [](char c) { return static_cast<unsigned char>(c) >= 0x80 || (c >= 'A' && c <= 'Z'); });
}

}  // namespace

// The literal strings RE2's prefilter requires of each pattern, and for each pattern which sets of
// its strings a text may contain and match: bit m of its table is set when a text that contains
// exactly the strings m (of its own) may match. Only for matchers whose every pattern requires some
// strings, at most kMaxAtoms of them, all ASCII, and whose tables are monotone (RE2's are: ANDs and
// ORs of strings). A text's strings are looked for one at a time, only until every pattern is
// decided: a string that one pattern needs and the text lacks usually rules out the others too.
struct OrderedMatcher::Prefilter {
  static constexpr std::size_t kMaxAtoms = 6;  // a table of 64 bits
  static constexpr int kMinAtomLength = 3;     // shorter strings are not required (RE2's option)
  struct Atom {
    std::string text;              // lowercase: a text is searched lowercased
    std::uint64_t if_present = 0;  // the atoms it contains (itself too): present when it is
    std::uint64_t if_absent = 0;   // the atoms that contain it (itself too): absent when it is
  };
  struct Pattern {
    std::vector<std::size_t> atoms;  // indices into `atoms`, in the table's order
    std::vector<std::size_t> order;  // indices into `atoms` of this pattern, in the order to look
    std::uint64_t table = 0;
  };
  std::atomic<bool> made{false};  // make() has run (from the first thread that needed it)
  std::mutex making;
  bool usable = false;
  std::vector<Atom> atoms;
  std::vector<Pattern> patterns;

  void make(const std::vector<std::unique_ptr<RE2>>& regexes);
  bool may_match(std::string_view text) const;
};

void OrderedMatcher::Prefilter::make(const std::vector<std::unique_ptr<RE2>>& regexes) {
  std::vector<Atom> all;
  std::vector<Pattern> made_patterns;
  for (const auto& re : regexes) {
    re2::FilteredRE2 filter(kMinAtomLength);
    int id = 0;
    if (filter.Add(re->pattern(), rule_regex_options(), &id) != RE2::NoError) return;
    std::vector<std::string> found;
    filter.Compile(&found);
    if (found.size() > kMaxAtoms) return;
    Pattern pattern;
    for (const std::string& atom : found) {
      if (std::any_of(atom.begin(), atom.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
        return;
      const auto at = std::find_if(all.begin(), all.end(), [&](const Atom& a) { return a.text == atom; });
      pattern.atoms.push_back(static_cast<std::size_t>(at - all.begin()));
      if (at == all.end()) all.push_back(Atom{atom});
    }
    const std::uint64_t sets = std::uint64_t{1} << found.size();
    for (std::uint64_t m = 0; m < sets; ++m) {
      std::vector<int> hits, potential;
      for (std::size_t k = 0; k < found.size(); ++k) {
        if ((m >> k & 1) != 0) hits.push_back(static_cast<int>(k));
      }
      filter.AllPotentials(hits, &potential);
      if (!potential.empty()) pattern.table |= std::uint64_t{1} << m;
    }
    if ((pattern.table & 1) != 0) return;  // it may match a text without any of its strings
    for (std::uint64_t m = 0; m < sets; ++m) {
      for (std::size_t k = 0; k < found.size(); ++k) {
        if ((pattern.table >> m & 1) > (pattern.table >> (m | std::uint64_t{1} << k) & 1)) return;
      }
    }
    made_patterns.push_back(std::move(pattern));
  }
  if (all.size() > 64) return;
  for (std::size_t i = 0; i < all.size(); ++i) {
    for (std::size_t j = 0; j < all.size(); ++j) {
      if (all[i].text.find(all[j].text) != std::string::npos) {
        all[i].if_present |= std::uint64_t{1} << j;
        all[j].if_absent |= std::uint64_t{1} << i;
      }
    }
  }
  // First the strings whose absence rules out most strings, then the longer (rarer).
  for (Pattern& pattern : made_patterns) {
    pattern.order = pattern.atoms;
    std::sort(pattern.order.begin(), pattern.order.end(), [&](std::size_t a, std::size_t b) {
      const auto rank = [&](std::size_t i) {
        return std::pair{std::popcount(all[i].if_absent), all[i].text.size()};
      };
      return rank(a) > rank(b);
    });
  }
  atoms = std::move(all);
  patterns = std::move(made_patterns);
  usable = true;
}

bool OrderedMatcher::Prefilter::may_match(std::string_view text) const {
  if (!plain_ascii(text)) {
    // The strings are lowercased as RE2's Unicode case folding does it, which ASCII's does not
    // reproduce beyond ASCII: such a text is always searched.
    if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
      return true;
    thread_local std::string lowered;  // reused across calls to save on reallocation
    lowered.assign(text);
    for (char& c : lowered) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    text = lowered;
  }
  std::uint64_t present = 0;
  std::uint64_t absent = 0;
  for (const Pattern& pattern : patterns) {
    for (;;) {
      // What the pattern's table says with the strings not looked for yet absent, and present.
      std::uint64_t low = 0;
      std::uint64_t high = 0;
      for (std::size_t k = 0; k < pattern.atoms.size(); ++k) {
        low |= (present >> pattern.atoms[k] & 1) << k;
        high |= (~absent >> pattern.atoms[k] & 1) << k;
      }
      if ((pattern.table >> low & 1) != 0) return true;
      if ((pattern.table >> high & 1) == 0) break;  // it cannot match: the next pattern
      const auto unknown = std::find_if(pattern.order.begin(), pattern.order.end(),
                                        [&](std::size_t i) { return ((present | absent) >> i & 1) == 0; });
      const Atom& atom = atoms[*unknown];
      if (text.find(atom.text) != std::string_view::npos) {
        present |= atom.if_present;
      } else {
        absent |= atom.if_absent;
      }
    }
  }
  return false;
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
  if (!patterns_.empty()) prefilter_ = std::make_unique<Prefilter>();
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

bool OrderedMatcher::may_match(std::string_view text) const {
  if (!prefilter_) return true;
  Prefilter& filter = *prefilter_;
  if (!filter.made.load(std::memory_order_acquire)) {
    const std::lock_guard lock(filter.making);
    if (!filter.made.load(std::memory_order_relaxed)) {
      filter.make(patterns_);
      filter.made.store(true, std::memory_order_release);
    }
  }
  return !filter.usable || filter.may_match(text);
}

std::optional<std::size_t> OrderedMatcher::first_match(std::string_view text, Expect expect) const {
  if (!may_match(text)) return std::nullopt;
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
