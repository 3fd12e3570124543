// OrderedMatcher: the first pattern that matches, with and without RE2::Set, and its prefilter,
// which must never turn away a text that a pattern matches.

#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <re2/re2.h>

#include "rules/matcher.hpp"

using shardwise::rules::detail::OrderedMatcher;

namespace {

OrderedMatcher compiled(const std::vector<std::string>& patterns) {
  OrderedMatcher matcher;
  for (const std::string& pattern : patterns) REQUIRE_FALSE(matcher.add(pattern).has_value());
  matcher.compile();
  return matcher;
}

// The first pattern that matches, each searched alone.
std::optional<std::size_t> first_alone(const std::vector<std::unique_ptr<RE2>>& patterns,
                                       const std::string& text) {
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    if (RE2::PartialMatch(text, *patterns[i])) return i;
  }
  return std::nullopt;
}

// Names of one to three components from words that the patterns below require, miss by a letter,
// or spell in capitals or beyond ASCII.
std::vector<std::string> names() {
  const std::vector<std::string> words{
      "layers", "mtp", "0",  "17", "items", "shared_items", "emb", "embed", "head", "weight", "scale",
      "Scale",  "MTP", "w2", "x",  "em",    "ÉMB",          "émb", "qz",    "bias", "gate_up"};
  std::vector<std::string> out{""};
  for (const std::string& a : words) {
    out.push_back(a);
    for (const std::string& b : words) {
      out.push_back(a + "." + b);
      for (const std::string& c : words) out.push_back(a + "." + b + "." + c);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("an ordered matcher finds the first pattern that matches, prefiltered or not") {
  const std::vector<std::vector<std::string>> matchers{
      {R"(^mtp\..*emb)", R"(^mtp\..*head\.weight$)"},
      {R"((?:^|\.)shared_items(?:\.|$))"},
      {R"(\.items\.(?P<index>[0-9]+)(?:\.|$))"},
      {R"((?P<key>[^.]+)\.(?:weight|scale|bias)$)", R"(gate.*\.bias$)", R"((?P<key>[^.]+)\.[^.]+$)"},
      {R"((?i)mtp\.EMB)", R"((?i)scale$)"},
      {R"(émb)", R"(\.w[123]\.weight$)", R"(items|head)"},
      {R"(^layers\.17)", R"(\.(?:emb|embed|head)\.(?:weight|scale)$)", R"(x$)"},
      {R"(a|b)", R"(q)"},
  };
  const std::vector<std::string> texts = names();
  std::size_t turned_away = 0;
  for (const std::vector<std::string>& patterns : matchers) {
    const OrderedMatcher matcher = compiled(patterns);
    std::vector<std::unique_ptr<RE2>> alone;
    for (const std::string& pattern : patterns)
      alone.push_back(std::make_unique<RE2>(pattern, shardwise::rules::detail::rule_regex_options()));
    for (const std::string& text : texts) {
      INFO(patterns[0] << " ... on '" << text << "'");
      const std::optional<std::size_t> expected = first_alone(alone, text);
      REQUIRE(matcher.first_match(text) == expected);
      REQUIRE(matcher.first_match(text, OrderedMatcher::Expect::often) == expected);
      if (!matcher.may_match(text)) {
        REQUIRE_FALSE(expected.has_value());
        ++turned_away;
      }
    }
  }
  CHECK(turned_away > texts.size());  // the prefilter spares searches
}

TEST_CASE("the prefilter turns away the names that lack what every pattern requires") {
  const OrderedMatcher skips = compiled({R"(^mtp\..*emb)", R"(^mtp\..*head\.weight$)"});
  CHECK_FALSE(skips.may_match("layers.3.items.17.w2.weight"));
  CHECK_FALSE(skips.may_match("mtp.0.norm.weight"));  // "mtp." without "emb" or "head.weight"
  CHECK(skips.may_match("mtp.0.embed.weight"));
  CHECK(skips.may_match("MTP.0.EMB"));  // searched lowercased: RE2 then says no
  CHECK_FALSE(skips.first_match("MTP.0.EMB").has_value());
  CHECK(skips.may_match("mtp.0.\xc3\x89mb"));  // beyond ASCII: always searched

  // A pattern that requires no literal string makes every name a candidate.
  const OrderedMatcher keys = compiled({R"(\.items\.)", R"([^.]+\.[^.]+$)"});
  CHECK(keys.may_match("a"));
  CHECK(keys.first_match("a.b") == std::optional<std::size_t>{1});
  const OrderedMatcher empty = compiled({});
  CHECK(empty.may_match("a"));
  CHECK_FALSE(empty.first_match("a").has_value());
}
