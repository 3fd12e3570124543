// `transforms:` in a rules file: the first rule matching the output name is the tensor's
// transform, shown in explain's trail; malformed rules are reported with their position.
#include <catch2/catch.hpp>

#include <string>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::test {
namespace {

using rules::Decision;
using rules::Rules;

const std::string kHead = R"(shardwise: 1
name: t
output: {file: "m{rank}.safetensors"}
unknown_keys: replicate
keys:
  - {match: '(?P<key>[^.]+)\.[^.]+$'}
table:
  w1: {rename: gate, split: out}
)";

TEST_CASE("transforms: the first rule matching the output name decides") {
  const Rules rules = Rules::load_text(kHead + R"(transforms:
  - name: fp4
    match: '\.gate\.weight$'
    reinterpret: {from: I8, to: F4}
  - name: codes
    match: '\.weight$'
    reinterpret: {from: U8, to: F8_E4M3}
)",
                                       "t.yaml");
  const auto params = rules.resolve_params({{"mp", 2}});
  // Matched on the output name (w1 renamed to gate), not the input name.
  const Decision gate = rules.decide("layers.0.w1.weight", params);
  REQUIRE(gate.transform != nullptr);
  CHECK(gate.transform->rule.label == "transform[fp4]");
  CHECK(gate.transform->from == st::DType::I8);
  CHECK(gate.transform->to == st::DType::F4);
  CHECK(gate.trail.back() == "transform[fp4]: reinterpret I8 as F4 (t.yaml:10:5)");
  const Decision other = rules.decide("layers.0.w3.weight", params);
  REQUIRE(other.transform != nullptr);
  CHECK(other.transform->rule.label == "transform[codes]");
  CHECK(rules.decide("layers.0.w3.bias", params).transform == nullptr);
  CHECK_THAT(rules.summary(),
             Catch::Contains("  transform[fp4]: reinterpret I8 as F4\n  transform[codes]: reinterpret "
                             "U8 as F8_E4M3\n"));
}

TEST_CASE("transforms: every malformed rule is reported with its position") {
  const std::string text = kHead + R"(transforms:
  - name: wider
    match: 'a'
    reinterpret: {from: F4, to: I8}
  - name: odd
    match: 'b'
    reinterpret: {from: BF16, to: F6_E2M3}
  - name: missing
    match: 'c'
  - name: typo
    match: 'd'
    reinterpret: {from: I8, to: F4E2M1}
  - match: 'a'
    reinterpret: {from: I8}
)";
  try {
    Rules::load_text(text, "t.yaml");
    FAIL("loaded malformed transforms");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("t.yaml:12:18: cannot reinterpret F4 (4 bits) as I8 (8 bits)"));
    CHECK_THAT(what, Catch::Contains("t.yaml:15:18: cannot reinterpret BF16 (16 bits) as F6_E2M3 (6 bits)"));
    CHECK_THAT(what, Catch::Contains("t.yaml:16:5: transform rule is missing required key 'reinterpret'"));
    CHECK_THAT(what, Catch::Contains("t.yaml:20:33: unknown dtype 'F4E2M1' in 'to' of reinterpret"));
    CHECK_THAT(what, Catch::Contains("t.yaml:21:12: transform rule never decides anything"));
    CHECK_THAT(what, Catch::Contains("t.yaml:22:18: reinterpret is missing required key 'to'"));
  }
}

}  // namespace
}  // namespace shardwise::test
