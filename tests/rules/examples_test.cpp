// The example rules files load clean and decide the cases their comments promise.
#include <catch2/catch.hpp>

#include <filesystem>

#include <shardwise/rules/rules.hpp>

#include "support/support.hpp"

using shardwise::rules::Decision;
using shardwise::rules::Rules;
using shardwise::rules::Split;

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

TEST_CASE("examples: every file in rules/examples loads and passes its own tests") {
  // Not embedded in the binary, so nothing else would notice one that no longer loads.
  std::size_t files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(shardwise::test::source_dir() + "/rules/examples")) {
    if (entry.path().extension() != ".yaml") continue;
    ++files;
    INFO(entry.path().string());
    const Rules rules = Rules::load_file(entry.path().string());
    const auto report = rules.run_tests();
    for (const auto& failure : report.failures) UNSCOPED_INFO(failure);
    CHECK(report.failures.empty());
  }
  // awq-llama, deepseek-v4.1-dspark-w4a16, gptq-act-order, llama-meta-to-hf, llama-tp-fused,
  // moe-stacked-experts, phi3-unfuse
  CHECK(files == 7);
}
