// `accepts:` in process: conditions judged against lists of tensor headers (names and dtypes),
// section errors at FILE:LINE:COL, extends, and which bundled rules fit each of DeepSeek's formats
// (headers spelt as tools/official_inventory.hpp and tools/deepseek_v4_inventory.hpp write them).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/accepts.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/rules/detect.hpp>
#include <shardwise/rules/rules.hpp>

#include "support/support.hpp"

using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::rules::Accepts;
using shardwise::rules::AcceptsVerdict;
using shardwise::rules::Invocation;
using shardwise::rules::Rules;
using shardwise::rules::TensorHeader;
using shardwise::st::DType;

namespace {

const std::string kHead = "shardwise: 1\nname: t\noutput: {file: \"m{rank}.safetensors\"}\n";

const std::string kAccepts = kHead +
                             "accepts:\n"
                             "  require:\n"
                             "    - {name: FP8 weights, match: '\\.weight$', dtype: [F8_E4M3]}\n"
                             "    - {match: '_scale_inv$'}\n"
                             "  forbid:\n"
                             "    - {name: GPTQ packing, match: '\\.qweight$', dtype: [I32]}\n"
                             "    - {dtype: [F8_E8M0]}\n";

struct JudgeCase {
  const char* what;
  std::vector<TensorHeader> tensors;
  bool fits;
  std::vector<std::string> unmet;
};

std::string load_error(const std::string& yaml) {
  try {
    Rules::load_text(yaml, "a.yaml");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    return e.what();
  }
  FAIL("loading did not fail");
  return "";
}

// The name of the bundled rules chosen for `tensors`, or the error's kind and message.
std::string chosen(const std::vector<TensorHeader>& tensors, const Invocation& invocation) {
  try {
    return shardwise::rules::choose_bundled_rules(tensors, invocation).rules.name();
  } catch (const Error& e) {
    return std::string(e.kind() == ErrorKind::input ? "input: " : "rules: ") + e.what();
  }
}

// A few headers of each format, as the generators and the real checkpoints spell them.
const std::vector<TensorHeader> kV3 = {
    {"model.embed_tokens.weight", DType::BF16},
    {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", DType::F8_E4M3},
    {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv", DType::F32},
    {"model.layers.0.self_attn.q_a_proj.weight", DType::F8_E4M3},
    {"model.layers.0.self_attn.q_a_proj.weight_scale_inv", DType::F32},
    {"model.layers.1.mlp.experts.0.down_proj.weight", DType::F8_E4M3},
    {"model.layers.1.mlp.gate.e_score_correction_bias", DType::F32},
};
const std::vector<TensorHeader> kV32 = {
    {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", DType::F8_E4M3},
    {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv", DType::F32},
    {"model.layers.0.self_attn.indexer.k_norm.bias", DType::F32},
    {"model.layers.0.self_attn.indexer.wk.weight", DType::F8_E4M3},
    {"model.layers.0.self_attn.indexer.wk.weight_scale_inv", DType::F32},
    {"model.layers.0.self_attn.q_a_proj.weight", DType::F8_E4M3},
    {"model.layers.0.self_attn.q_a_proj.weight_scale_inv", DType::F32},
};
const std::vector<TensorHeader> kV4 = {
    {"embed.weight", DType::BF16},
    {"layers.0.attn.indexer.wq_b.weight", DType::F8_E4M3},
    {"layers.0.attn.indexer.wq_b.scale", DType::F8_E8M0},
    {"layers.0.attn.wo_a.weight", DType::F8_E4M3},
    {"layers.0.attn.wo_a.scale", DType::F8_E8M0},
    {"layers.0.ffn.experts.0.w1.weight", DType::I8},
    {"layers.0.ffn.experts.0.w1.scale", DType::F8_E8M0},
};
const std::vector<TensorHeader> kW4A16 = {
    {"embed.weight", DType::BF16},
    {"layers.0.attn.wq_a.qweight", DType::I32},
    {"layers.0.attn.wq_a.qzeros", DType::I32},
    {"layers.0.attn.wq_a.scales", DType::F16},
    {"layers.0.ffn.gate.tid2eid", DType::I64},
};

}  // namespace

TEST_CASE("accepts: every required condition met by some tensor, no forbidden one by any") {
  Rules::load_text(kAccepts, "a.yaml");  // loads: the section is valid
  const Accepts rules = Accepts::of_text(kAccepts, "a.yaml");
  const JudgeCase cases[] = {
      {"fits", {{"a.weight", DType::F8_E4M3}, {"a.weight_scale_inv", DType::F32}}, true, {}},
      {"a required name of another dtype",
       {{"a.weight", DType::BF16}, {"a.weight_scale_inv", DType::F32}},
       false,
       {"needs FP8 weights: no tensor is '\\.weight$' F8_E4M3 (a.weight is BF16)"}},
      {"a required name missing",
       {{"a.weight", DType::F8_E4M3}},
       false,
       {"needs '_scale_inv$': no tensor is '_scale_inv$'"}},
      {"a forbidden name and dtype",
       {{"a.weight", DType::F8_E4M3}, {"a.weight_scale_inv", DType::F32}, {"b.qweight", DType::I32}},
       false,
       {"refuses GPTQ packing: b.qweight (I32)"}},
      {"a forbidden name of another dtype is fine",
       {{"a.weight", DType::F8_E4M3}, {"a.weight_scale_inv", DType::F32}, {"b.qweight", DType::I8}},
       true,
       {}},
      {"a forbidden dtype, any name",
       {{"a.weight", DType::F8_E4M3}, {"a.weight_scale_inv", DType::F32}, {"a.scale", DType::F8_E8M0}},
       false,
       {"refuses any name F8_E8M0: a.scale (F8_E8M0)"}},
      {"no tensors at all",
       {},
       false,
       {"needs FP8 weights: no tensor is '\\.weight$' F8_E4M3",
        "needs '_scale_inv$': no tensor is '_scale_inv$'"}},
  };
  for (const JudgeCase& c : cases) {
    INFO(c.what);
    const AcceptsVerdict verdict = rules.judge(c.tensors);
    CHECK(verdict.declared);
    CHECK(verdict.fits == c.fits);
    CHECK(verdict.unmet == c.unmet);
  }
  const AcceptsVerdict fits = rules.judge(cases[0].tensors);
  CHECK(fits.met ==
        std::vector<std::string>{"FP8 weights", "'_scale_inv$'", "no GPTQ packing", "no any name F8_E8M0"});
}

TEST_CASE(
    "accepts: rules without the section are not judged, and an extending file inherits or replaces it") {
  const AcceptsVerdict none = Accepts::of_text(kHead, "a.yaml").judge(kV3);
  CHECK_FALSE(none.declared);
  CHECK_FALSE(none.fits);

  shardwise::test::TempDir dir;
  shardwise::test::write_file(dir / "parent.yaml", kAccepts);
  const std::string child = "shardwise: 1\nextends: parent.yaml\nname: c\n";
  shardwise::test::write_file(dir / "inherits.yaml", child);
  shardwise::test::write_file(dir / "replaces.yaml", child + "accepts: {forbid: [{dtype: [I32]}]}\n");
  const std::vector<TensorHeader> packed = {{"a.qweight", DType::I32}};
  const AcceptsVerdict inherited = Accepts::of_named_rules((dir / "inherits.yaml").string()).judge(packed);
  CHECK(inherited.declared);
  CHECK(inherited.unmet.size() == 3);  // the parent's two requirements and its GPTQ ban
  const AcceptsVerdict replaced = Accepts::of_named_rules((dir / "replaces.yaml").string()).judge(packed);
  CHECK(replaced.unmet == std::vector<std::string>{"refuses any name I32: a.qweight (I32)"});
  CHECK(Accepts::of_named_rules((dir / "replaces.yaml").string()).judge(kV3).fits);
  CHECK(Accepts::of_named_rules((dir / "replaces.yaml").string()).describe() ==
        "requires nothing; forbids any name I32");
}

TEST_CASE("accepts: section errors at FILE:LINE:COL, all in one run") {
  const std::string yaml = kHead +
                           "accepts:\n"                      // 4
                           "  require:\n"                    // 5
                           "    - {match: 'a(b'}\n"          // 6
                           "    - {name: nothing}\n"         // 7
                           "    - {dtype: [FP8], nam: x}\n"  // 8
                           "  forbid: {match: x}\n"          // 9
                           "  allow: []\n";                  // 10
  const std::string error = load_error(yaml);
  CHECK_THAT(error, Catch::Contains(
                        "a.yaml:6:15: invalid regex 'a(b' in condition of accepts.require: missing ): a(b"));
  CHECK_THAT(
      error,
      Catch::Contains(
          "a.yaml:7:7: condition of accepts.require needs 'match' (a regex of tensor names), 'dtype' (a "
          "list of dtypes) or both"));
  CHECK_THAT(error,
             Catch::Contains("a.yaml:8:16: unknown dtype 'FP8' in 'dtype' of condition of accepts.require"));
  CHECK_THAT(error,
             Catch::Contains(
                 "a.yaml:8:22: unknown key 'nam' in condition of accepts.require (did you mean 'name'?)"));
  CHECK_THAT(error, Catch::Contains("a.yaml:9:11: 'forbid' of accepts must be a list"));
  CHECK_THAT(error, Catch::Contains("a.yaml:10:3: unknown key 'allow' in accepts"));
  CHECK_THAT(load_error(kHead + "accepts: {}\n"),
             Catch::Contains("a.yaml:4:10: accepts needs 'require', 'forbid' or both"));
  CHECK_THAT(load_error(kHead + "accepts: {forbid: [{dtype: []}]}\n"),
             Catch::Contains("'dtype' of condition of accepts.forbid is empty: leave it out for any dtype"));
}

TEST_CASE("accepts: every bundled rules file declares one") {
  for (const auto& bundled : shardwise::rules::bundled_rules()) {
    INFO(bundled.name);
    Rules::load_text(bundled.text, bundled.file_name);
    CHECK(Accepts::of_named_rules(bundled.name).declared());
  }
}

TEST_CASE("accepts: another model's GPTQ release is gptq-to-bf16's, not the DeepSeek-V4 W4A16 converter's") {
  const std::vector<TensorHeader> llama = {
      {"model.embed_tokens.weight", DType::F16},
      {"model.layers.0.self_attn.q_proj.qweight", DType::I32},
      {"model.layers.0.self_attn.q_proj.qzeros", DType::I32},
      {"model.layers.0.self_attn.q_proj.scales", DType::F16},
      {"model.layers.0.self_attn.q_proj.g_idx", DType::I32},
  };
  CHECK(chosen(llama, {}) == "gptq-to-bf16");
  // The same release under DeepSeek-V4's HF attention name is the W4A16 converter's.
  std::vector<TensorHeader> v4 = llama;
  v4.push_back({"model.layers.0.self_attn.q_a_proj.qweight", DType::I32});
  CHECK(chosen(v4, {true, {"n_experts"}}) == "deepseek-v4-w4a16");
}

TEST_CASE("accepts: a packed release without g_idx is AWQ's unless its config says gptq") {
  const std::vector<TensorHeader> packed = {
      {"model.layers.0.self_attn.q_proj.qweight", DType::I32},
      {"model.layers.0.self_attn.q_proj.qzeros", DType::I32},
      {"model.layers.0.self_attn.q_proj.scales", DType::F16},
  };
  const auto with_config = [&](const std::string& quant_method) {
    const auto config = shardwise::rules::ConfigFiles::texts(
        {{"config.json", R"({"quantization_config": {"quant_method": ")" + quant_method + R"("}})"}});
    try {
      return shardwise::rules::choose_bundled_rules(packed, {}, config).rules.name();
    } catch (const Error& e) {
      return std::string(e.what());
    }
  };
  CHECK(chosen(packed, {}) == "awq-to-bf16");
  CHECK(with_config("awq") == "awq-to-bf16");
  CHECK(with_config("gptq") == "gptq-to-bf16");
  const std::string neither = with_config("exl2");
  CHECK_THAT(neither,
             Catch::Contains("gptq-to-bf16: the checkpoint's config refuses it: config.json: "
                             "quantization_config.quant_method is \"exl2\", not one of the choices"));
  CHECK_THAT(neither, Catch::Contains("awq-to-bf16: the checkpoint's config refuses it"));
  // With g_idx the packing is GPTQ's, whatever else.
  std::vector<TensorHeader> gptq = packed;
  gptq.push_back({"model.layers.0.self_attn.q_proj.g_idx", DType::I32});
  CHECK(chosen(gptq, {}) == "gptq-to-bf16");
}

TEST_CASE("accepts: each DeepSeek format has one bundled rules file, the command line settling V3's two") {
  const Invocation mp{true, {"n_experts"}};
  CHECK(chosen(kV3, mp) == "deepseek-v3");
  CHECK(chosen(kV32, mp) == "deepseek-v3.2");
  CHECK(chosen(kV4, mp) == "deepseek-v4");
  CHECK(chosen(kV4, {true, {"n_experts", "expert_dtype"}}) == "deepseek-v4");
  CHECK(chosen(kW4A16, mp) == "deepseek-v4-w4a16");
  // fp8_cast_bf16.py's command line: no --model-parallel, no parameters.
  CHECK(chosen(kV3, {}) == "fp8-cast-bf16");
  CHECK(chosen(kV32, {}) == "fp8-cast-bf16");
  // A plain (unquantised) checkpoint is the W4A16 converter's, as the reference converts it; but a
  // BF16 V3 (fp8-cast-bf16's output) is V3's converter's.
  CHECK(chosen({{"layers.0.attn.wq_a.weight", DType::BF16}}, mp) == "deepseek-v4-w4a16");
  CHECK(chosen({{"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", DType::BF16}}, mp) == "deepseek-v3");
}

TEST_CASE("accepts: no fitting rules, or a command line that fits none of several, is refused with reasons") {
  const std::string none = chosen({{"a.weight", DType::F8_E4M3}}, {true, {}});
  CHECK_THAT(none, Catch::StartsWith("input: no bundled rules fit this checkpoint"));
  CHECK_THAT(none, Catch::Contains("\n  deepseek-v4-w4a16: needs DeepSeek-V4 attention (attn.wq_a, or "
                                   "self_attn.q_a_proj under HF names): no tensor is "));
  CHECK_THAT(none, Catch::Contains("; refuses FP8 weights: a.weight (F8_E4M3)\n"));
  CHECK_THAT(none, Catch::Contains("\n  deepseek-v4: needs E8M0 block scales: no tensor is "));
  CHECK_THAT(none,
             Catch::Contains("\n  fp8-cast-bf16: needs F32 block scales NAME_scale_inv: no tensor is "));

  // --n-experts without --model-parallel: deepseek-v3 needs -m, fp8-cast-bf16 takes no --n-experts.
  const std::string both = chosen(kV3, {false, {"n_experts"}});
  CHECK_THAT(both,
             Catch::StartsWith("rules: this checkpoint fits deepseek-v3, fp8-cast-bf16, but the command line "
                               "suits none of them: give --rules NAME"));
  CHECK_THAT(both, Catch::Contains("\n  deepseek-v3: writes one file per rank and needs --model-parallel"));
  CHECK_THAT(both, Catch::Contains("\n  fp8-cast-bf16: takes no --n-experts"));
}

TEST_CASE("accepts: --rules of another format is refused naming the rules that fit") {
  const auto refusal = [](const std::string& name, const std::vector<TensorHeader>& tensors) -> std::string {
    try {
      const std::string warning =
          shardwise::rules::check_rules_fit(shardwise::rules::load_named_rules(name), tensors);
      return "accepted" + (warning.empty() ? "" : ": " + warning);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::rules);
      return e.what();
    }
  };
  CHECK_THAT(
      refusal("deepseek-v4-w4a16", kV4),
      Catch::Contains("; refuses FP8 weights: layers.0.attn.indexer.wq_b.weight (F8_E4M3); refuses E8M0 "
                      "block scales: layers.0.attn.indexer.wq_b.scale (F8_E8M0). It fits deepseek-v4: give "
                      "--rules deepseek-v4"));
  CHECK_THAT(refusal("deepseek-v4", kW4A16),
             Catch::Contains("It fits deepseek-v4-w4a16: give --rules deepseek-v4-w4a16"));
  CHECK_THAT(refusal("deepseek-v3.2", kV3), Catch::Contains("It fits deepseek-v3 and fp8-cast-bf16"));
  CHECK_THAT(refusal("deepseek-v3", kV32), Catch::Contains("It fits deepseek-v3.2 and fp8-cast-bf16"));
  CHECK_THAT(refusal("fp8-cast-bf16", kV4), Catch::Contains("It fits deepseek-v4: give --rules deepseek-v4"));
  CHECK(refusal("deepseek-v3", kV3) == "accepted");
  CHECK(refusal("fp8-cast-bf16", kV3) == "accepted");
  // Nothing else fits: the rules named are used, with a warning.
  CHECK_THAT(refusal("deepseek-v4", {{"a.weight", DType::F8_E4M3}}),
             Catch::StartsWith("accepted: the checkpoint is not what the rules deepseek-v4 accept"));
}
