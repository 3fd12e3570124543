// Name templates (`output.file`, companion names): parsing against the allowed fields, word-for-word
// errors, expansion, and matching names back (regex metacharacters as literal text, numbers beyond
// 64 bits told apart).

#include <shardwise/rules/name_template.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::rules {
namespace {

NameTemplate output_template(std::string_view text) {
  NameTemplate::Parsed parsed = NameTemplate::parse(text, kOutputFileFields, "output file");
  INFO(parsed.error);
  REQUIRE(parsed.name_template);
  return std::move(*parsed.name_template);
}

TEST_CASE("templates: the fields they use, what they expand to") {
  struct Case {
    std::string_view text;
    bool rank;
    bool mp;
    std::string rank3_of8;  // expanded with rank 3, mp 8
  };
  const Case cases[] = {
      {"model{rank}-mp{mp}.safetensors", true, true, "model3-mp8.safetensors"},
      {"rank{rank}.st", true, false, "rank3.st"},
      {"{mp}_{rank}", true, true, "8_3"},
      {"r{rank}-of{mp}-{rank}", true, true, "r3-of8-3"},
      {"plain.safetensors", false, false, "plain.safetensors"},
      {"", false, false, ""},
      {"a}b{rank}", true, false, "a}b3"},  // a '}' alone is text
      {"(.*)+[{rank}]^$|?\\.st", true, false, "(.*)+[3]^$|?\\.st"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    const NameTemplate t = output_template(c.text);
    CHECK(t.text() == c.text);
    CHECK(t.uses(kRankField) == c.rank);
    CHECK(t.uses(kMpField) == c.mp);
    CHECK(t.expand_numbers(std::array<std::uint64_t, 2>{3, 8}) == c.rank3_of8);
  }
}

TEST_CASE("companion templates expand {name} and {stem}") {
  const NameTemplate::Parsed parsed = NameTemplate::parse("{stem}.scale+{name}", kCompanionFields, "scale");
  REQUIRE(parsed.name_template);
  const std::array<std::string_view, 2> values = {"layers.0.w.weight", "layers.0.w"};
  CHECK(parsed.name_template->expand(values) == "layers.0.w.scale+layers.0.w.weight");
  CHECK(parsed.name_template->uses(kNameField));
  CHECK(parsed.name_template->uses(kStemField));
}

TEST_CASE("bad templates, word for word") {
  struct Bad {
    std::string_view text;
    std::span<const std::string_view> fields;
    std::string message;
  };
  const Bad cases[] = {
      {"model{rnk}.st", kOutputFileFields, "T has an unknown placeholder '{rnk}' (known: {rank}, {mp})"},
      {"model{rank}{", kOutputFileFields, "T has an unknown placeholder '{' (known: {rank}, {mp})"},
      {"model{rank.st", kOutputFileFields, "T has an unknown placeholder '{rank.st' (known: {rank}, {mp})"},
      {"m{}{rank}", kOutputFileFields, "T has an unknown placeholder '{}' (known: {rank}, {mp})"},
      {"m{{rank}}", kOutputFileFields, "T has an unknown placeholder '{{rank}' (known: {rank}, {mp})"},
      {"{name}{rank}", kOutputFileFields, "T has an unknown placeholder '{name}' (known: {rank}, {mp})"},
      {"{stem}.{rank}", kCompanionFields, "T has an unknown placeholder '{rank}' (known: {name}, {stem})"},
      {"{base}.scale", kCompanionFields, "T has an unknown placeholder '{base}' (known: {name}, {stem})"},
  };
  for (const Bad& b : cases) {
    INFO(b.text);
    const NameTemplate::Parsed parsed = NameTemplate::parse(b.text, b.fields, "T");
    CHECK_FALSE(parsed.name_template);
    CHECK(parsed.error == b.message);
  }
}

struct MatchCase {
  std::string_view name;
  NameMatch::Fit fit;
  std::vector<std::uint64_t> values;  // Fit::yes
};

void check_matches(const NameTemplate& t, std::span<const MatchCase> cases) {
  for (const MatchCase& c : cases) {
    INFO(t.text() << " against " << c.name);
    const NameMatch m = t.match(c.name);
    CHECK(m.fit == c.fit);
    if (c.fit == NameMatch::Fit::yes) CHECK(m.values == c.values);
  }
}

TEST_CASE("matching names against an output template") {
  using Fit = NameMatch::Fit;
  const MatchCase cases[] = {
      {"model0-mp4.safetensors", Fit::yes, {0, 4}},
      {"model12-mp16.safetensors", Fit::yes, {12, 16}},
      {"model18446744073709551615-mp1.safetensors", Fit::yes, {UINT64_MAX, 1}},
      {"model01-mp4.safetensors", Fit::no, {}},  // not how expand writes a number
      {"model-mp4.safetensors", Fit::no, {}},
      {"modelx-mp4.safetensors", Fit::no, {}},
      {"model1-mp4.safetensors.partial", Fit::no, {}},
      {"xmodel1-mp4.safetensors", Fit::no, {}},
      {"model1-mp4Xsafetensors", Fit::no, {}},  // '.' is not "any character"
      {"model18446744073709551616-mp1.safetensors", Fit::number_too_large, {}},
  };
  check_matches(output_template("model{rank}-mp{mp}.safetensors"), cases);
}

TEST_CASE("a number beyond 64 bits names its field and digits") {
  const std::string digits(60, '7');
  const NameMatch m = output_template("m{rank}-{mp}.st").match("m1-" + digits + ".st");
  CHECK(m.fit == NameMatch::Fit::number_too_large);
  CHECK(m.field == "mp");
  CHECK(m.digits == digits);
}

TEST_CASE("regex metacharacters in a template are literal text") {
  using Fit = NameMatch::Fit;
  const MatchCase cases[] = {
      {"(.*)+[3]^$|?\\.st", Fit::yes, {3, 0}}, {"(.*)+[12]^$|?\\.st", Fit::yes, {12, 0}},
      {"aaaa+[3]^$|?\\.st", Fit::no, {}},      {"(.*)+[3].st", Fit::no, {}},
      {"(.*)+3^$|?\\.st", Fit::no, {}},
  };
  check_matches(output_template("(.*)+[{rank}]^$|?\\.st"), cases);
}

TEST_CASE("a repeated field matches one value, and with() fixes a field") {
  using Fit = NameMatch::Fit;
  const NameTemplate t = output_template("r{rank}-of{mp}-{rank}7.st");
  const MatchCase cases[] = {
      {"r0-of2-07.st", Fit::yes, {0, 2}},
      {"r13-of2-137.st", Fit::yes, {13, 2}},
      {"r1-of2-27.st", Fit::no, {}},  // the two ranks differ
      {"r1-of2-1.st", Fit::no, {}},
  };
  check_matches(t, cases);
  const NameTemplate of2 = t.with(kMpField, "2");
  CHECK(of2.text() == "r{rank}-of2-{rank}7.st");
  CHECK_FALSE(of2.uses(kMpField));
  const MatchCase bound[] = {
      {"r13-of2-137.st", Fit::yes, {13, 0}},
      {"r13-of3-137.st", Fit::no, {}},
  };
  check_matches(of2, bound);
  // Digits of mp next to the rank's: with mp fixed they are literal text, not a second number.
  const NameTemplate mp_first = output_template("m{mp}{rank}.st").with(kMpField, "1");
  CHECK(mp_first.match("m123.st").values == std::vector<std::uint64_t>{23, 0});
}

TEST_CASE("matching takes time linear in the name, whatever the template") {
  // Backtracking matchers take exponential time on this pair: many adjacent numbers, and a long
  // run of digits that fails at its end.
  std::string text = "m";
  for (int i = 0; i < 30; ++i) text += "{rank}";
  text += "{mp}x";
  const NameTemplate t = output_template(text);
  CHECK(t.match("m" + std::string(60, '1') + "y").fit == NameMatch::Fit::no);
  CHECK(t.match("m" + std::string(10000, '1') + "y").fit == NameMatch::Fit::no);
}

TEST_CASE("expand_output_file: a template a manifest recorded") {
  CHECK(expand_output_file("model{rank}-mp{mp}.safetensors", 3, 8) == "model3-mp8.safetensors");
  try {
    (void)expand_output_file("model{rnk}.st", 0, 1);
    FAIL("expanded a template with an unknown placeholder");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    CHECK(std::string(e.what()) ==
          "output file pattern 'model{rnk}.st' has an unknown placeholder '{rnk}' (known: {rank}, {mp})");
  }
}

}  // namespace
}  // namespace shardwise::rules
