// The bundled rules against the reference converter's behaviour (convert_w4a16_seed.py, described in
// DEEPSEEK_V4.md), one row per tensor kind, in both naming styles. Expectations were written from
// the reference's code: strip `model.`, MTP embed/head copies skipped, component renames, the key,
// its `mapping` entry (dim 0 = out, 1 = in, None = replicate), shared experts replicated, routed
// experts owned by index / (n_experts / mp).
#include <catch2/catch.hpp>

#include <shardwise/rules/rules.hpp>

using shardwise::rules::Decision;
using shardwise::rules::Rules;
using shardwise::rules::Split;

namespace {

struct Case {
  const char* name;
  Decision::Kind kind;
  const char* output;  // place: output name; skip: the rule label
  Split split;
  int owner_index;     // -1: not owned
  const char* member;  // packed member suffix, "" for a plain tensor
};

constexpr auto P = Decision::Kind::place;
constexpr auto S = Decision::Kind::skip;
constexpr auto R = Split::replicate;
constexpr auto O = Split::out;
constexpr auto I = Split::in;

const Case kInferenceStyle[] = {
    {"embed.weight", P, "embed.weight", O, -1, ""},
    {"head.weight", P, "head.weight", O, -1, ""},
    {"norm.weight", P, "norm.weight", R, -1, ""},
    {"hc_head_fn", P, "hc_head_fn", R, -1, ""},
    {"hc_head_base", P, "hc_head_base", R, -1, ""},
    {"hc_head_scale", P, "hc_head_scale", R, -1, ""},
    {"layers.0.attn_norm.weight", P, "layers.0.attn_norm.weight", R, -1, ""},
    {"layers.0.ffn_norm.weight", P, "layers.0.ffn_norm.weight", R, -1, ""},
    {"layers.7.hc_attn_fn", P, "layers.7.hc_attn_fn", R, -1, ""},
    {"layers.7.hc_ffn_base", P, "layers.7.hc_ffn_base", R, -1, ""},
    {"layers.7.hc_attn_scale", P, "layers.7.hc_attn_scale", R, -1, ""},
    {"layers.1.attn.wq_a.qweight", P, "layers.1.attn.wq_a.qweight", R, -1, "qweight"},
    {"layers.1.attn.q_norm.weight", P, "layers.1.attn.q_norm.weight", R, -1, ""},
    {"layers.1.attn.wq_b.qzeros", P, "layers.1.attn.wq_b.qzeros", O, -1, "qzeros"},
    {"layers.1.attn.wkv.scales", P, "layers.1.attn.wkv.scales", R, -1, "scales"},
    {"layers.1.attn.kv_norm.weight", P, "layers.1.attn.kv_norm.weight", R, -1, ""},
    {"layers.1.attn.wo_a.qweight", P, "layers.1.attn.wo_a.qweight", O, -1, "qweight"},
    {"layers.1.attn.wo_b.scales", P, "layers.1.attn.wo_b.scales", I, -1, "scales"},
    {"layers.1.attn.attn_sink", P, "layers.1.attn.attn_sink", O, -1, ""},
    {"layers.2.attn.compressor.wkv.qweight", P, "layers.2.attn.compressor.wkv.qweight", R, -1, "qweight"},
    {"layers.2.attn.compressor.wgate.qzeros", P, "layers.2.attn.compressor.wgate.qzeros", R, -1, "qzeros"},
    {"layers.2.attn.compressor.ape", P, "layers.2.attn.compressor.ape", R, -1, ""},
    {"layers.2.attn.compressor.norm.weight", P, "layers.2.attn.compressor.norm.weight", R, -1, ""},
    {"layers.2.attn.indexer.wq_b.scales", P, "layers.2.attn.indexer.wq_b.scales", O, -1, "scales"},
    {"layers.2.attn.indexer.weights_proj.qzeros", P, "layers.2.attn.indexer.weights_proj.qzeros", O, -1,
     "qzeros"},
    {"layers.2.attn.indexer.compressor.wkv.qweight", P, "layers.2.attn.indexer.compressor.wkv.qweight", R, -1,
     "qweight"},
    {"layers.2.attn.indexer.compressor.ape", P, "layers.2.attn.indexer.compressor.ape", R, -1, ""},
    {"layers.2.ffn.gate.weight", P, "layers.2.ffn.gate.weight", R, -1, ""},
    {"layers.0.ffn.gate.tid2eid", P, "layers.0.ffn.gate.tid2eid", R, -1, ""},
    {"layers.5.ffn.gate.bias", P, "layers.5.ffn.gate.bias", R, -1, ""},
    {"layers.5.ffn.experts.0.w1.qweight", P, "layers.5.ffn.experts.0.w1.qweight", O, 0, "qweight"},
    {"layers.5.ffn.experts.37.w2.scales", P, "layers.5.ffn.experts.37.w2.scales", I, 37, "scales"},
    {"layers.5.ffn.experts.255.w3.qzeros", P, "layers.5.ffn.experts.255.w3.qzeros", O, 255, "qzeros"},
    {"layers.5.ffn.shared_experts.w1.qweight", P, "layers.5.ffn.shared_experts.w1.qweight", R, -1, "qweight"},
    {"layers.5.ffn.shared_experts.w2.scales", P, "layers.5.ffn.shared_experts.w2.scales", R, -1, "scales"},
    {"mtp.0.e_proj.qweight", P, "mtp.0.e_proj.qweight", R, -1, "qweight"},
    {"mtp.0.h_proj.scales", P, "mtp.0.h_proj.scales", R, -1, "scales"},
    {"mtp.0.enorm.weight", P, "mtp.0.enorm.weight", R, -1, ""},
    {"mtp.0.norm.weight", P, "mtp.0.norm.weight", R, -1, ""},
    {"mtp.0.hc_head_fn", P, "mtp.0.hc_head_fn", R, -1, ""},
    {"mtp.0.attn.wq_b.qweight", P, "mtp.0.attn.wq_b.qweight", O, -1, "qweight"},
    {"mtp.0.ffn.experts.9.w2.qweight", P, "mtp.0.ffn.experts.9.w2.qweight", I, 9, "qweight"},
    {"mtp.0.embed.weight", S, "skip: mtp-embed", R, -1, ""},
    {"mtp.0.head.weight", S, "skip: mtp-head", R, -1, ""},
    // A first upload quantised the embedding: the reference splits the triple on out.
    {"embed.qweight", P, "embed.qweight", O, -1, "qweight"},
};

const Case kHfStyle[] = {
    {"model.embed_tokens.weight", P, "embed.weight", O, -1, ""},
    {"lm_head.weight", P, "head.weight", O, -1, ""},
    {"model.norm.weight", P, "norm.weight", R, -1, ""},
    {"model.layers.3.input_layernorm.weight", P, "layers.3.attn_norm.weight", R, -1, ""},
    {"model.layers.3.post_attention_layernorm.weight", P, "layers.3.ffn_norm.weight", R, -1, ""},
    {"model.layers.3.self_attn.q_proj.weight", P, "layers.3.attn.wq.weight", O, -1, ""},
    {"model.layers.3.self_attn.q_a_proj.qweight", P, "layers.3.attn.wq_a.qweight", R, -1, "qweight"},
    {"model.layers.3.self_attn.q_a_layernorm.weight", P, "layers.3.attn.q_norm.weight", R, -1, ""},
    {"model.layers.3.self_attn.q_b_proj.scales", P, "layers.3.attn.wq_b.scales", O, -1, "scales"},
    {"model.layers.3.self_attn.kv_a_proj_with_mqa.qzeros", P, "layers.3.attn.wkv_a.qzeros", R, -1, "qzeros"},
    {"model.layers.3.self_attn.kv_a_layernorm.weight", P, "layers.3.attn.kv_norm.weight", R, -1, ""},
    {"model.layers.3.self_attn.kv_b_proj.qweight", P, "layers.3.attn.wkv_b.qweight", O, -1, "qweight"},
    {"model.layers.3.self_attn.o_proj.qweight", P, "layers.3.attn.wo.qweight", I, -1, "qweight"},
    {"model.layers.3.mlp.gate.weight", P, "layers.3.ffn.gate.weight", R, -1, ""},
    {"model.layers.3.mlp.gate.e_score_correction_bias", P, "layers.3.ffn.gate.bias", R, -1, ""},
    {"model.layers.3.mlp.experts.5.gate_proj.qweight", P, "layers.3.ffn.experts.5.w1.qweight", O, 5,
     "qweight"},
    {"model.layers.3.mlp.experts.100.down_proj.scales", P, "layers.3.ffn.experts.100.w2.scales", I, 100,
     "scales"},
    {"model.layers.3.mlp.experts.255.up_proj.qzeros", P, "layers.3.ffn.experts.255.w3.qzeros", O, 255,
     "qzeros"},
    {"model.layers.3.mlp.shared_experts.gate_proj.qweight", P, "layers.3.ffn.shared_experts.w1.qweight", R,
     -1, "qweight"},
    {"model.layers.3.mlp.shared_experts.down_proj.qweight", P, "layers.3.ffn.shared_experts.w2.qweight", R,
     -1, "qweight"},
    {"model.layers.0.mlp.down_proj.qweight", P, "layers.0.ffn.w2.qweight", I, -1, "qweight"},
    {"model.layers.0.mlp.up_proj.weight", P, "layers.0.ffn.w3.weight", O, -1, ""},
    // FP8-era names: weight_scale_inv becomes scale and follows its module's key.
    {"model.layers.0.self_attn.o_proj.weight_scale_inv", P, "layers.0.attn.wo.scale", I, -1, ""},
    {"model.mtp.0.embed_tokens.weight", S, "skip: mtp-embed", R, -1, ""},
};

// Planning decides without the trail: everything else must be what `explain` is told.
void check_same_without_trail(const Rules& rules, const Decision& d, const shardwise::rules::Params& params) {
  const Decision lean = rules.decide(d.source, params, Rules::Trail::omit);
  CHECK_FALSE(d.trail.empty());
  CHECK(lean.trail.empty());
  CHECK(lean.kind == d.kind);
  CHECK(lean.source == d.source);
  CHECK(lean.normalized == d.normalized);
  CHECK(lean.output == d.output);
  CHECK(lean.reason == d.reason);
  CHECK(lean.rule == d.rule);  // the same rule, not a copy
  CHECK(lean.key == d.key);
  CHECK(lean.split == d.split);
  CHECK(lean.owner.has_value() == d.owner.has_value());
  if (lean.owner && d.owner) {
    CHECK(lean.owner->index == d.owner->index);
    CHECK(lean.owner->count == d.owner->count);
    CHECK(lean.owner->rule == d.owner->rule);
  }
  CHECK(lean.layout == d.layout);
  CHECK(lean.member == d.member);
  CHECK(lean.group == d.group);
}

void check(const Rules& rules, const Case& c) {
  const auto params = rules.resolve_params({{"mp", 8}, {"n_experts", 256}});
  INFO(c.name);
  const Decision d = rules.decide(c.name, params);
  INFO(d.reason);
  check_same_without_trail(rules, d, params);
  REQUIRE(d.kind == c.kind);
  if (c.kind == S) {
    CHECK(d.rule->label == c.output);
    CHECK_FALSE(d.reason.empty());
    return;
  }
  CHECK(d.output == c.output);
  CHECK(d.owner.has_value() == (c.owner_index >= 0));
  if (d.owner) {
    CHECK(d.owner->index == static_cast<std::uint64_t>(c.owner_index));
    CHECK(d.owner->count == 256);
    CHECK(d.owner->count_param == "n_experts");
  } else {
    CHECK(d.split == c.split);
  }
  CHECK(std::string(d.member ? d.member->suffix : "") == c.member);
  if (d.member != nullptr) {
    CHECK(d.layout->name == "gptq-w4a16");
    CHECK(d.group + "." + d.member->suffix == d.output);
  }
}

}  // namespace

TEST_CASE("bundled rules: inference-style names decide as the reference converter") {
  const Rules rules = Rules::bundled();
  for (const auto& c : kInferenceStyle) check(rules, c);
}

TEST_CASE("bundled rules: HF-style names decide as the reference converter") {
  const Rules rules = Rules::bundled();
  for (const auto& c : kHfStyle) check(rules, c);
}

TEST_CASE("bundled rules: labels, locations and the file's other settings") {
  const Rules rules = Rules::bundled();
  const auto params = rules.resolve_params({{"n_experts", 256}});
  CHECK(params.at("mp") == 1);
  CHECK(params.at("n_experts") == 256);
  CHECK(rules.name() == "deepseek-v4-w4a16");
  CHECK(rules.display_name() == "<bundled>/deepseek-v4-w4a16.yaml");
  CHECK(rules.output_file(3, 8) == "model3-mp8.safetensors");
  CHECK(rules.side_files() == std::vector<std::string>{"tokenizer.json", "tokenizer_config.json"});
  const Decision q = rules.decide("model.layers.3.self_attn.q_a_proj.qweight", params);
  CHECK(q.rule->label == "table[q_a_proj]");
  CHECK(q.rule->where.file == "<bundled>/deepseek-v4-w4a16.yaml");
  CHECK(q.rule->where.line > 0);
  CHECK(q.key == "q_a_proj");
  CHECK(q.normalized == "layers.3.attn.q_a_proj.qweight");
  CHECK(q.group == "layers.3.attn.wq_a");
  CHECK(q.trail.size() == 5);  // strip, rename, packed member, key, table
  CHECK(rules.decide("layers.1.ffn.shared_experts.w1.qweight", params).rule->label ==
        "override[shared_experts]");
  CHECK(rules.decide("layers.1.ffn.experts.1.w1.qweight", params).rule->label == "ownership[experts]");
  const Decision gate = rules.decide("layers.1.ffn.gate.weight", params);
  CHECK(gate.rule->label == "unknown_keys[gate]");
  CHECK(gate.rule->where.line > 0);
  CHECK(rules.decide("layers.2.ffn.gate.weight", params).rule == gate.rule);  // made once per key
  CHECK(rules.decide("layers.2.ffn.other.weight", params).rule->label == "unknown_keys[other]");
  const Decision lone = rules.decide("lonely", params);
  CHECK(lone.kind == Decision::Kind::unmatched);
  CHECK(lone.reason == "no key rule matches 'lonely'");
  CHECK(lone.rule == nullptr);
  check_same_without_trail(rules, lone, params);
  const auto& scales = *rules.layouts().at(0).find("scales");
  CHECK(scales.cast_to == shardwise::st::DType::BF16);
  CHECK(scales.dims[0].axis == Split::in);
  CHECK(scales.dims[0].divisor == 128);
}

TEST_CASE("resolve_params refuses unknown names and mp=0, and requires n_experts as the reference does") {
  const Rules rules = Rules::bundled();
  CHECK_THROWS_WITH(
      rules.resolve_params({}),
      "--n-experts is required: routed experts per MoE layer (256 for V4-Flash, 384 for V4-Pro) "
      "(parameter n_experts of <bundled>/deepseek-v4-w4a16.yaml:14:3 has no default; --param "
      "n_experts=N is the same)");
  CHECK_THROWS_WITH(rules.resolve_params({{"n_expert", 3}}),
                    "unknown parameter 'n_expert' for rules <bundled>/deepseek-v4-w4a16.yaml (did you mean "
                    "'n_experts'?) (known: mp, n_experts)");
  CHECK_THROWS_WITH(rules.resolve_params({{"mp", 0}, {"n_experts", 8}}),
                    "mp (the model-parallel size) must be at least 1");
}
