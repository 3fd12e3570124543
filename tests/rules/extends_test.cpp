// `extends:`: a rules file built on bundled rules or another file. Lists: the child's entries first;
// map entries (table keys, layouts, params) of the child replace the parent's whole; scalars are
// the child's when given. Every rule keeps the location of the file it was written in.
#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/explain.hpp>
#include <shardwise/rules/rules.hpp>

#include "support/support.hpp"

using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::rules::Decision;
using shardwise::rules::Rules;
using shardwise::rules::Split;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

const char* const kParent = R"(shardwise: 1
name: parent
description: the parent
params:
  n_experts: {default: 8, help: experts}
output: {file: "p{rank}.safetensors"}
side_files: [tokenizer.json]
unknown_keys: error
normalize:
  strip_prefix: ["model."]
  rename: [{from: mlp, to: ffn}]
skip:
  - {name: drop-rotary, match: 'rotary', reason: recomputed}
layouts:
  gptq:
    members:
      qweight: {shape: [in/8, out], dtype: [I32]}
      scales: {shape: [in/128, out]}
keys:
  - {name: module, match: '(?P<key>[^.]+)\.[^.]+$'}
table:
  wq: {split: out}
  wo: {split: in}
ownership:
  - {name: experts, match: '\.experts\.(?P<index>[0-9]+)\.', count: n_experts}
)";

std::string load_error(const std::string& path) {
  try {
    Rules::load_file(path);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    return e.what();
  }
  FAIL("loading " << path << " did not fail");
  return "";
}

}  // namespace

TEST_CASE("extends: the child's list entries come first, its map entries and scalars replace the parent's") {
  TempDir dir;
  write_file(dir / "parent.yaml", kParent);
  write_file(dir / "child.yaml", R"(shardwise: 1
name: child
extends: parent.yaml
params:
  n_experts: {default: 4}
  n_mtp: {default: 2}
normalize:
  rename: [{from: self_attn, to: attn}]
layouts:
  gptq:
    members:
      qweight: {shape: [in, out/8], dtype: [I32]}
      scales: {shape: [in/128, out]}
table:
  wo: {split: replicate}
ownership:
  - {name: mtp-experts, match: '^mtp\.[0-9]+\.ffn\.experts\.(?P<index>[0-9]+)\.', count: n_mtp}
)");
  const Rules rules = Rules::load_file((dir / "child.yaml").string());
  CHECK(rules.name() == "child");
  CHECK(rules.description() == "the parent");
  CHECK(rules.output_file(1, 2) == "p1.safetensors");
  CHECK(rules.side_files() == std::vector<std::string>{"tokenizer.json"});
  REQUIRE(rules.params().size() == 2);
  CHECK(rules.params()[0].name == "n_experts");
  CHECK(rules.params()[0].default_value == 4);
  CHECK(rules.params()[0].help.empty());  // replaced whole, help included
  const auto params = rules.resolve_params({{"mp", 2}});

  const Decision wo = rules.decide("model.layers.0.self_attn.wo.weight", params);
  CHECK(wo.output == "layers.0.attn.wo.weight");
  CHECK(wo.split == Split::replicate);
  CHECK(wo.rule->label == "table[wo]");
  CHECK(wo.rule->where.str() == (dir / "child.yaml").string() + ":15:3");
  const Decision wq = rules.decide("layers.0.mlp.wq.weight", params);
  CHECK(wq.output == "layers.0.ffn.wq.weight");
  CHECK(wq.rule->where.str() == (dir / "parent.yaml").string() + ":22:3");

  const Decision mtp = rules.decide("mtp.1.ffn.experts.3.wq.weight", params);
  REQUIRE(mtp.owner);
  CHECK(mtp.owner->count_param == "n_mtp");
  CHECK(mtp.rule->label == "ownership[mtp-experts]");
  const Decision expert = rules.decide("layers.1.ffn.experts.3.wq.weight", params);
  REQUIRE(expert.owner);
  CHECK(expert.owner->count_param == "n_experts");
  CHECK(expert.owner->count == 4);

  const Decision packed = rules.decide("layers.0.wq.qweight", params);
  REQUIRE(packed.member != nullptr);
  CHECK(packed.member->dims[0].divisor == 1);  // the child's layout, not the parent's [in/8, out]
  CHECK(packed.member->dims[1].divisor == 8);
  CHECK(rules.decide("layers.0.rotary.inv_freq", params).kind == Decision::Kind::skip);

  const std::string explained = shardwise::rules::explain_decision(wq, params);
  CHECK_THAT(explained,
             Catch::Contains("rename component 'mlp' -> 'ffn' (" + (dir / "parent.yaml").string() + ":11:"));
  CHECK_THAT(rules.summary(), Catch::Contains("  extends: " + (dir / "parent.yaml").string() + "\n"));
  CHECK(rules.text().find(kParent) != std::string::npos);  // a changed parent changes the manifest's hash
}

TEST_CASE("extends: bundled rules by name, chains of files, paths relative to the extending file") {
  TempDir dir;
  std::filesystem::create_directories(dir / "sub");
  write_file(dir / "sub" / "middle.yaml",
             "shardwise: 1\nname: middle\nextends: deepseek-v4-w4a16\ntable:\n  wq_a: {split: out}\n");
  write_file(dir / "child.yaml", "shardwise: 1\nname: child\nextends: sub/middle.yaml\n");
  const Rules rules = Rules::load_file((dir / "child.yaml").string());
  const auto params = rules.resolve_params({{"mp", 2}, {"n_experts", 256}});
  const Decision wq_a = rules.decide("layers.0.attn.wq_a.qweight", params);
  CHECK(wq_a.split == Split::out);
  CHECK(wq_a.rule->where.file == (dir / "sub" / "middle.yaml").string());
  const Decision w2 = rules.decide("layers.0.ffn.experts.3.w2.qweight", params);
  CHECK(w2.rule->where.file == "<bundled>/deepseek-v4-w4a16.yaml");
  CHECK(rules.output_file(0, 2) == "model0-mp2.safetensors");
  CHECK_THAT(rules.summary(), Catch::Contains("  extends: " + (dir / "sub" / "middle.yaml").string() +
                                              " <- <bundled>/deepseek-v4-w4a16.yaml\n"));
}

TEST_CASE("extends: problems are reported at the extends line, each file's problems in its own name") {
  TempDir dir;
  const std::string at = (dir / "c.yaml").string();
  struct Case {
    std::string yaml;
    std::string expected;
  };
  const Case cases[] = {
      {"shardwise: 1\nextends: deepseek-v4-w4a61\n",
       at + ":2:10: extends: no bundled rules named 'deepseek-v4-w4a61' (did you mean 'deepseek-v4-w4a16'?)"},
      {"shardwise: 1\nextends: absent.yaml\n",
       at + ":2:10: cannot extend 'absent.yaml': cannot open rules file " + (dir / "absent.yaml").string() +
           ": No such file or directory"},
      {"shardwise: 1\nextends: c.yaml\n",
       at + ":2:10: extends 'c.yaml' makes a cycle: " + at + " is already in the chain"},
      {"shardwise: 1\nextends: [a, b]\n", at + ":2:10: extends must be a string, got a list"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    write_file(dir / "c.yaml", c.yaml);
    CHECK_THAT(load_error(at), Catch::Contains(c.expected));
  }
  write_file(dir / "bad-parent.yaml",
             "shardwise: 1\nname: p\noutput: {file: \"p{rank}.safetensors\"}\nskip: [{match: 'x'}]\n");
  write_file(dir / "c.yaml", "shardwise: 1\nextends: bad-parent.yaml\nskp: []\n");
  CHECK(load_error(at) == "invalid rules file " + at + " (2 problems):\n  " + at +
                              ":3:1: unknown key 'skp' in the rules file (did you mean 'skip'?)\n  " +
                              (dir / "bad-parent.yaml").string() +
                              ":4:8: skip rule is missing required key 'reason'");
}

TEST_CASE(
    "extends: a file without extends still needs a name and an output, an extending one inherits them") {
  TempDir dir;
  write_file(dir / "p.yaml", "shardwise: 1\n");
  CHECK_THAT(load_error((dir / "p.yaml").string()),
             Catch::Contains("the rules file is missing required key 'name'") &&
                 Catch::Contains("the rules file is missing required key 'output'"));
  write_file(dir / "c.yaml", "shardwise: 1\nextends: deepseek-v4-w4a16\n");
  CHECK(Rules::load_file((dir / "c.yaml").string()).name() == "deepseek-v4-w4a16");
}
