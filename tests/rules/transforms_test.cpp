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
    CHECK_THAT(
        what, Catch::Contains("t.yaml:16:5: transform rule needs one of reinterpret, dequantize, requantize, "
                              "requantize_scale"));
    CHECK_THAT(what, Catch::Contains("t.yaml:20:33: unknown dtype 'F4E2M1' in 'to' of reinterpret"));
    CHECK_THAT(what, Catch::Contains("t.yaml:21:12: transform rule never decides anything"));
    CHECK_THAT(what, Catch::Contains("t.yaml:22:18: reinterpret is missing required key 'to'"));
  }
}

TEST_CASE("transforms: `when:` picks among rules of one regex by parameter values, choices by their word") {
  const Rules rules = Rules::load_text(kHead + R"(params:
  kind: {choices: [fp4, fp8], default: fp4, help: how}
transforms:
  - name: four
    match: '\.gate\.weight$'
    when: {kind: fp4}
    reinterpret: {from: I8, to: F4}
  - name: eight
    match: '\.gate\.weight$'
    when: {kind: fp8, mp: 2}
    requantize: {scale: '{stem}.scale'}
  - name: scale
    match: '\.gate\.scale$'
    requantize_scale: {weight: '{stem}.weight'}
  - name: bf16
    match: '\.w2\.weight$'
    dequantize: {scale: '{name}_scale_inv', lookup: input, block: [128, 64], nan: triton, missing: keep, dtype: [F8_E4M3]}
)",
                                       "t.yaml");
  REQUIRE(rules.params().size() == 1);
  CHECK(rules.params()[0].choices == std::vector<std::string>{"fp4", "fp8"});
  CHECK(rules.params()[0].default_value == 0u);
  const auto decide = [&](std::uint64_t mp, std::uint64_t kind) {
    const Decision d = rules.decide("layers.0.w1.weight", rules.resolve_params({{"mp", mp}, {"kind", kind}}));
    return d.transform == nullptr ? std::string("none") : d.transform->rule.label;
  };
  CHECK(decide(1, 0) == "transform[four]");
  CHECK(decide(2, 1) == "transform[eight]");
  CHECK(decide(1, 1) == "none");  // fp8 needs mp=2 too
  const Decision bf16 = rules.decide("layers.0.w2.weight", rules.resolve_params({}));
  REQUIRE(bf16.transform != nullptr);
  CHECK(bf16.transform->kind == rules::TransformRule::Kind::dequantize);
  CHECK(bf16.transform->block_rows == 128);
  CHECK(bf16.transform->block_cols == 64);
  CHECK(bf16.transform->nan_bits == 0x7FFF);
  CHECK(bf16.trail.back() ==
        "transform[bf16]: dequantize F8_E4M3 x scale '{name}_scale_inv' (input name, block 128x64) -> "
        "BF16, "
        "NaN 0x7FFF; without a scale: kept as it is (t.yaml:23:5)");
  CHECK(rules::parse_param_value(rules.params()[0], "fp8") == 1);
  try {
    rules::parse_param_value(rules.params()[0], "fp16");
    FAIL("accepted a word that is not a choice");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    CHECK(std::string(e.what()) == "--kind fp16: expected one of fp4, fp8");
  }
}

TEST_CASE("transforms: malformed block-scaled rules and choices are reported with their position") {
  const std::string text = kHead + R"(params:
  kind: {choices: [fp4, fp8], default: fp16}
transforms:
  - match: 'a'
    dequantize: {scale: 'x.scale', block: [128], nan: gpu}
  - match: 'b'
    when: {knd: fp4}
    requantize: {scale: '{base}.scale'}
  - match: 'c'
    when: {kind: fp2}
    reinterpret: {from: I8, to: F4}
    requantize_scale: {weight: '{stem}.weight'}
)";
  try {
    Rules::load_text(text, "t.yaml");
    FAIL("loaded malformed transforms");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    const std::string what = e.what();
    CHECK_THAT(what,
               Catch::Contains(
                   "t.yaml:10:40: default 'fp16' of parameter 'kind' is not one of its choices (fp4, fp8)"));
    CHECK_THAT(what, Catch::Contains(
                         "t.yaml:13:25: 'scale' of 'dequantize' of transform rule must name the companion "
                         "from the tensor's name ({name} or {stem})"));
    CHECK_THAT(what, Catch::Contains("t.yaml:13:43: 'block' of dequantize must be [rows, columns]"));
    CHECK_THAT(what,
               Catch::Contains("t.yaml:13:55: nan must be torch-cpu (0xFFFF), triton (0x7FFF) or canonical "
                               "(0x7FC0), got 'gpu'"));
    CHECK_THAT(what, Catch::Contains(
                         "t.yaml:15:12: when names an undefined parameter 'knd' (did you mean 'kind'?)"));
    CHECK_THAT(what, Catch::Contains("t.yaml:16:25: 'scale' of 'requantize' of transform rule has an unknown "
                                     "placeholder '{base}'"));
    CHECK_THAT(what, Catch::Contains("t.yaml:18:18: when kind: --kind fp2: expected one of fp4, fp8"));
    CHECK_THAT(what,
               Catch::Contains("t.yaml:17:5: transform rule has reinterpret and requantize_scale: give one"));
  }
}

}  // namespace
}  // namespace shardwise::test
