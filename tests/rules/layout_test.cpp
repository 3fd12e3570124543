// A second packed layout (AWQ: qweight packed along out) needs only a new YAML file; and the
// language's other knobs: literal keys, unknown_keys: error, chained renames, param-less files.
#include <catch2/catch.hpp>

#include <shardwise/rules/rules.hpp>

#include "support/support.hpp"

using shardwise::rules::Decision;
using shardwise::rules::Rules;
using shardwise::rules::Split;

TEST_CASE("AWQ layout: members, dims and casts come from YAML") {
  const Rules rules = Rules::load_text(
      shardwise::test::read_file(shardwise::test::source_dir() + "/tests/data/rules/awq.yaml"), "awq.yaml");
  const auto params = rules.resolve_params({{"mp", 4}});
  REQUIRE(rules.layouts().size() == 1);
  const auto& qweight = *rules.layouts()[0].find("qweight");
  CHECK(qweight.dims[0].axis == Split::in);
  CHECK(qweight.dims[0].divisor == 1);
  CHECK(qweight.dims[1].axis == Split::out);
  CHECK(qweight.dims[1].divisor == 8);
  CHECK(rules.layouts()[0].find("scales")->cast_to == shardwise::st::DType::BF16);
  CHECK(rules.output_file(2, 4) == "rank2.safetensors");

  struct Case {
    const char* name;
    const char* output;
    Split split;
    const char* member;
  };
  const Case cases[] = {
      {"blocks.0.up.qweight", "blocks.0.up.qweight", Split::out, "qweight"},
      {"blocks.0.up.qzeros", "blocks.0.up.qzeros", Split::out, "qzeros"},
      {"blocks.0.down.scales", "blocks.0.down_proj.scales", Split::in, "scales"},
      {"blocks.0.norm.weight", "blocks.0.norm.weight", Split::replicate, ""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const Decision d = rules.decide(c.name, params);
    REQUIRE(d.kind == Decision::Kind::place);
    CHECK(d.output == c.output);
    CHECK(d.split == c.split);
    CHECK(std::string(d.member ? d.member->suffix : "") == c.member);
    if (d.member) CHECK(d.layout->name == "awq-w4");
  }
  const Decision unknown = rules.decide("blocks.0.gate.weight", params);
  CHECK(unknown.kind == Decision::Kind::unmatched);
  CHECK(unknown.reason ==
        "key 'gate' is not in the table and unknown_keys is error (add a table entry 'gate', or a "
        "skip or reject rule for the tensor)");
  // A key near a table key is another module of the checkpoint, not a misspelling: no "did you mean".
  const Decision near = rules.decide("blocks.0.q_norm.weight", params);
  CHECK(near.reason ==
        "key 'q_norm' is not in the table and unknown_keys is error (add a table entry 'q_norm', or a "
        "skip or reject rule for the tensor)");
}

TEST_CASE("literal keys rename every equal component, renames chain in order, ownership by mp") {
  const Rules rules = Rules::load_text(R"(shardwise: 1
name: t
output: {file: "m{rank}.safetensors"}
unknown_keys: replicate
normalize:
  strip_prefix: [a., b.]
  rename:
    - {from: x, to: y}
    - {from: y, to: z}
keys:
  - {match: '\.b$', key: k}
  - {match: '(?P<key>[^.]+)\.[^.]+$'}
table:
  k: {rename: kk, split: in}
ownership:
  - {name: slot, match: 'slot(?P<index>[0-9]+)', count: mp}
)",
                                       "t.yaml");
  const auto params = rules.resolve_params({{"mp", 4}});
  const Decision chained = rules.decide("a.x.w", params);
  CHECK(chained.normalized == "z.w");
  CHECK(chained.trail.size() == 5);  // strip, two renames, key, unknown key
  const Decision literal = rules.decide("k.q.k.b", params);
  CHECK(literal.output == "kk.q.kk.b");
  CHECK(literal.split == Split::in);
  const Decision owned = rules.decide("slot3.w", params);
  REQUIRE(owned.owner);
  CHECK(owned.owner->index == 3);
  CHECK(owned.owner->count == 4);
  CHECK(owned.rule->label == "ownership[slot]");
  const Decision huge = rules.decide("slot99999999999999999999999.w", params);
  CHECK(huge.kind == Decision::Kind::unmatched);
  CHECK(huge.reason ==
        "ownership[slot] (t.yaml:16:5) captured index '99999999999999999999999', which is not a number");
}

TEST_CASE("keys: each name takes the first key rule that matches it, whatever the names before took") {
  const Rules rules = Rules::load_text(R"(shardwise: 1
name: t
output: {file: "m{rank}.safetensors"}
unknown_keys: replicate
keys:
  - {name: packed, match: '(?P<key>[^.]+)\.(?:qweight|scales)$'}
  - {name: bias, match: '\.bias$', key: b}
  - {name: module, match: '(?P<key>[^.]+)\.[^.]+$'}
)",
                                       "t.yaml");
  const auto params = rules.resolve_params({{"mp", 2}});
  // Runs of the first rule broken by the others, and back (the first rule is tried alone first
  // after it decided a name).
  const std::pair<const char*, const char*> cases[] = {
      {"l.0.up.qweight", "up"},    {"l.0.up.scales", "up"},           {"l.0.up.bias", "b"},
      {"l.0.norm.weight", "norm"}, {"l.1.down.qweight", "down"},      {"l.1.gate.bias", "b"},
      {"l.1.down.scales", "down"}, {"l.1.qweight.weight", "qweight"}, {"l.2.w.qweight", "w"},
  };
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& [name, key] : cases) {
      INFO(name);
      const Decision d = rules.decide(name, params, pass == 0 ? Rules::Trail::omit : Rules::Trail::record);
      REQUIRE(d.key);
      CHECK(*d.key == key);
    }
  }
}
