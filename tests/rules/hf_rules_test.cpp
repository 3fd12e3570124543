// What the rules language says for Hugging Face checkpoints: `output: {layout: hf}`, a prefix added
// to every name (`normalize.add_prefix` with `except`), and side files dropped or rewritten.
#include <catch2/catch.hpp>

#include <string>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>

using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::rules::Decision;
using shardwise::rules::OutputLayout;
using shardwise::rules::Rules;
using shardwise::rules::SideFileRule;

namespace {

std::string load_error(const std::string& yaml) {
  try {
    Rules::load_text(yaml, "x.yaml");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    return e.what();
  }
  FAIL("loading did not fail");
  return "";
}

Rules with_output(const std::string& output) {
  return Rules::load_text("shardwise: 1\nname: h\noutput: " + output + "\n", "h.yaml");
}

}  // namespace

TEST_CASE("output: {layout: hf} has no ranks, transformers' 5GB unless a size is given") {
  const Rules plain = with_output("{layout: hf}");
  CHECK(plain.output_layout() == OutputLayout::hf);
  CHECK(!plain.mirrors_input());
  CHECK(plain.max_shard_size() == 5'000'000'000);
  CHECK(plain.output_file_pattern().empty());
  CHECK_THAT(plain.summary(),
             Catch::Contains("output: Hugging Face layout, shards of at most 5000000000 bytes (no ranks)"));
  CHECK(with_output("{layout: hf, max_shard_size: 0.3MB}").max_shard_size() == 300'000);
  CHECK(with_output("{layout: hf, max_shard_size: 1234}").max_shard_size() == 1234);
  const Rules mirrored = with_output("{layout: hf, mirror: true}");
  CHECK(mirrored.output_layout() == OutputLayout::hf);
  CHECK(mirrored.max_shard_size() == 0);
  CHECK(with_output("{mirror: true}").output_layout() == OutputLayout::mirror);
  CHECK(with_output("{file: \"m{rank}.st\"}").output_layout() == OutputLayout::per_rank);
}

TEST_CASE("layout mistakes, word for word") {
  CHECK(load_error("shardwise: 1\nname: h\noutput: {layout: gguf}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:3:18: 'layout' of output must be hf (Hugging Face's "
        "files), got 'gguf'");
  CHECK(load_error("shardwise: 1\nname: h\noutput: {layout: hf, max_shard_size: 5GiB}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:3:38: max shard size '5GiB': binary units are not "
        "accepted (huggingface_hub takes TB, GB, MB or KB, powers of ten); give the number of bytes instead");
  CHECK(load_error("shardwise: 1\nname: h\noutput: {file: \"a{rank}.st\", max_shard_size: 5GB}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:3:9: 'max_shard_size' of output needs 'layout: hf'");
  CHECK(load_error("shardwise: 1\nname: h\noutput: {layout: hf, mirror: true, max_shard_size: 5GB}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:3:9: output takes 'max_shard_size' (Hugging Face's "
        "shards) or 'mirror: true' (the input's files), not both");
  CHECK(load_error("shardwise: 1\nname: h\noutput: {layout: hf, file: a.st}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:3:9: output takes 'file' (one file per rank) or "
        "'layout: hf' (no ranks), not both");
}

TEST_CASE("normalize.add_prefix puts a multi-component prefix before every name but the exceptions") {
  const Rules rules = Rules::load_text(R"(shardwise: 1
name: p
output: {layout: hf}
unknown_keys: replicate
normalize:
  strip_prefix: ['decoder.']
  rename: [{from: head, to: lm_head}]
  add_prefix: 'model.'
  except: '^lm_head\.'
keys:
  - {name: any, match: '^model\.layers\.(?P<key>[a-z_]+)\.'}
  - {name: top, match: '', key: top}
)",
                                       "p.yaml");
  const Decision layer = rules.decide("decoder.layers.attn.weight", {{"mp", 1}});
  CHECK(layer.kind == Decision::Kind::place);
  CHECK(layer.normalized == "model.layers.attn.weight");
  CHECK(layer.output == "model.layers.attn.weight");
  REQUIRE(layer.trail.size() >= 2);
  CHECK(layer.trail[0] == "strip prefix 'decoder.' (p.yaml:6:18)");
  CHECK(layer.trail[1] == "add prefix 'model.' (p.yaml:8:15)");
  // The exception is searched after the renames: head became lm_head.
  CHECK(rules.decide("head.weight", {{"mp", 1}}).output == "lm_head.weight");
  CHECK(rules.decide("norm.weight", {{"mp", 1}}).output == "model.norm.weight");
  CHECK_THAT(rules.summary(), Catch::Contains("add prefix 'model.' (with exceptions)"));

  CHECK(load_error("shardwise: 1\nname: p\noutput: {layout: hf}\nnormalize: {except: '^a'}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:4:21: 'except' of normalize belongs to 'add_prefix', "
        "which is not given");
  CHECK(load_error("shardwise: 1\nname: p\noutput: {layout: hf}\nnormalize: {add_prefix: m., except: '('}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:4:37: invalid regex '(' in 'except' of add_prefix: "
        "missing ): (");
}

TEST_CASE("side_files entries {NAME: drop} and {NAME: dequantized}") {
  const Rules rules = Rules::load_text(
      "shardwise: 1\nname: s\noutput: {layout: hf}\n"
      "side_files: ['*', {config.json: dequantized}, {quant_config.json: drop}]\n",
      "s.yaml");
  CHECK(rules.side_files() == std::vector<std::string>{"*"});
  REQUIRE(rules.side_file_rules().size() == 2);
  CHECK(rules.side_file_rules()[0].name == "config.json");
  CHECK(rules.side_file_rules()[0].action == SideFileRule::Action::dequantized);
  CHECK(rules.side_file_rules()[1].action == SideFileRule::Action::drop);
  CHECK_THAT(rules.summary(), Catch::Contains("side files: *, config.json (dequantized), quant_config.json (not copied)"));

  CHECK(load_error("shardwise: 1\nname: s\noutput: {layout: hf}\nside_files: [{config.json: removed}]\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:4:28: side file 'config.json': 'removed' is not drop "
        "(never copied) or dequantized (config.json without its quantisation)");
  CHECK(load_error("shardwise: 1\nname: s\noutput: {layout: hf}\nside_files: [config.json, {config.json: drop}]\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:4:27: side file 'config.json' is listed twice");
  CHECK(load_error("shardwise: 1\nname: s\noutput: {layout: hf}\nside_files: [{'*.json': drop}]\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:4:14: side file '*.json' with an action must be a "
        "plain file name, not a path or pattern");
}
