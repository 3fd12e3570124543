// The example rules files load clean and decide the cases their comments promise.
#include <catch2/catch.hpp>

#include <shardwise/rules/rules.hpp>

#include "support/support.hpp"

using shardwise::rules::Decision;
using shardwise::rules::Rules;
using shardwise::rules::Split;

TEST_CASE("examples: DeepSeek-V3 FP8 sketch") {
  const Rules rules = Rules::load_file(shardwise::test::source_dir() + "/rules/examples/deepseek-v3-fp8.yaml");
  const auto params = rules.resolve_params({{"mp", 8}});
  const Decision scale = rules.decide("model.layers.3.self_attn.o_proj.weight_scale_inv", params);
  CHECK(scale.output == "layers.3.attn.wo.scale");
  CHECK(scale.split == Split::in);
  CHECK(rules.decide("model.layers.4.mlp.shared_experts.gate_proj.weight", params).split == Split::out);
  CHECK(rules.decide("model.layers.61.embed_tokens.weight", params).kind == Decision::Kind::skip);
  const Decision unknown = rules.decide("model.layers.1.self_attn.rotary.inv_freq", params);
  CHECK(unknown.kind == Decision::Kind::unmatched);
  CHECK(unknown.reason ==
        "key 'rotary' is not in the table and unknown_keys is error (add a table entry 'rotary', or "
        "a skip or reject rule for the tensor)");
}

TEST_CASE("examples: AWQ Llama") {
  const Rules rules = Rules::load_file(shardwise::test::source_dir() + "/rules/examples/awq-llama.yaml");
  const auto params = rules.resolve_params({{"mp", 2}});
  const Decision q = rules.decide("model.layers.0.self_attn.q_proj.qweight", params);
  CHECK(q.split == Split::out);
  REQUIRE(q.member != nullptr);
  CHECK(q.member->dims[1].divisor == 8);
  CHECK(rules.output_file(1, 2) == "rank1-of-2.safetensors");
}

TEST_CASE("examples: DeepSeek-V4.1 DSpark, ten lines on the bundled rules, with passing tests") {
  const Rules rules =
      Rules::load_file(shardwise::test::source_dir() + "/rules/examples/deepseek-v4.1-dspark-w4a16.yaml");
  const auto report = rules.run_tests();
  for (const auto& failure : report.failures) UNSCOPED_INFO(failure);
  CHECK(report.failures.empty());
  CHECK(report.run == 3);
  const auto params = rules.resolve_params({{"mp", 8}, {"n_experts", 384}, {"n_mtp_experts", 128}});
  // MTP experts by their own count (128 / 8 = 16 per rank), backbone experts by n_experts (48 per rank).
  const Decision mtp = rules.decide("model.mtp.1.mlp.experts.127.down_proj.qzeros", params);
  REQUIRE(mtp.owner);
  CHECK(mtp.owner->count_param == "n_mtp_experts");
  REQUIRE(mtp.owner->count);
  CHECK(mtp.owner->index / (*mtp.owner->count / 8) == 7);
  CHECK(mtp.rule->where.file.ends_with("deepseek-v4.1-dspark-w4a16.yaml"));
  const Decision backbone = rules.decide("layers.5.ffn.experts.127.w2.qzeros", params);
  REQUIRE(backbone.owner);
  REQUIRE(backbone.owner->count);
  CHECK(backbone.owner->index / (*backbone.owner->count / 8) == 2);
  CHECK(backbone.rule->where.file == "<bundled>/deepseek-v4-w4a16.yaml");
  CHECK(rules.decide("mtp.2.embed.weight", params).kind == Decision::Kind::skip);
  CHECK(rules.decide("mtp.2.ffn.shared_experts.w1.qweight", params).split == Split::replicate);
}
