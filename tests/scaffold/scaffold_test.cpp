// rules scaffold: drafts made from checkpoints' headers load, plan their checkpoint with their
// defaults and at the mp they were guessed for, and say what they found (packings with their
// factors, ownership with its count, splits); checkpoints that cannot be described are refused
// with every problem named.
#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/scaffold/scaffold.hpp>

#include "plan/plan_fixture.hpp"
#include "support/support.hpp"

namespace {

using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::rules::Decision;
using shardwise::rules::Rules;
using shardwise::rules::Split;
using shardwise::scaffold::TensorHeader;
using shardwise::test::TempDir;
using shardwise::test::TensorSpec;
using DType = shardwise::st::DType;
namespace st = shardwise::st;
namespace plan = shardwise::plan;
namespace rules = shardwise::rules;
namespace scaffold = shardwise::scaffold;

struct Draft {
  std::string text;
  Rules rules;
};

std::vector<TensorHeader> headers_of(const st::Checkpoint& checkpoint) {
  std::vector<TensorHeader> headers;
  for (const st::TensorRef& ref : checkpoint.tensors()) {
    headers.push_back({ref.info->name, ref.info->dtype, ref.info->shape});
  }
  return headers;
}

// The options the CLI gives: the packed triple's suffixes as the bundled rules' GPTQ layout names them.
scaffold::ScaffoldOptions bundled_options() {
  const Rules bundled = Rules::bundled();
  REQUIRE(!bundled.layouts().empty());
  const auto packed = scaffold::packed_suffixes_of(bundled.layouts().front());
  REQUIRE(packed);
  scaffold::ScaffoldOptions options;
  options.packed = *packed;
  return options;
}

// Scaffolds the checkpoint at `path` for `mp` ranks, then plans it with the draft's defaults
// (mp = 1) and at `mp`: either throws, the test fails.
Draft scaffold_and_plan(const std::string& path, std::uint64_t mp) {
  const st::Checkpoint checkpoint = st::Checkpoint::open(path);
  scaffold::ScaffoldOptions options = bundled_options();
  options.model_parallel = mp;
  options.source = path;
  std::string text = scaffold::scaffold_rules(headers_of(checkpoint), options);
  INFO(text);
  Rules loaded = Rules::load_text(text, "draft.yaml");
  CHECK_NOTHROW(plan::plan_checkpoint(checkpoint, loaded, {1, {}}));
  CHECK_NOTHROW(plan::plan_checkpoint(checkpoint, loaded, {mp, {}}));
  return Draft{std::move(text), std::move(loaded)};
}

Draft scaffold_specs(const TempDir& dir, const std::vector<TensorSpec>& specs, std::uint64_t mp) {
  shardwise::test::write_checkpoint_file(dir / "model.safetensors", specs);
  return scaffold_and_plan(dir.str(), mp);
}

Decision decide(const Draft& draft, const std::string& name, std::uint64_t mp) {
  return draft.rules.decide(name, draft.rules.resolve_params({{"mp", mp}}));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("scaffold: DeepSeek-V4-shaped checkpoints, both naming styles") {
  for (const std::string style : {"inference", "hf"}) {
    DYNAMIC_SECTION(style) {
      TempDir dir;
      const auto gen =
          shardwise::test::run_command({shardwise::test::tools_dir() + "/gen_checkpoint", "--out", dir.str(),
                                        "--config", "tiny", "--style", style, "--header-only"});
      REQUIRE(gen.exit_code == 0);
      const Draft draft = scaffold_and_plan(dir.str(), 8);
      INFO(draft.text);
      CHECK(contains(draft.text, "  gptq-int4-g128:\n"));
      CHECK(contains(draft.text, "      qweight: {shape: [in/8, out], dtype: [I32]}\n"));
      CHECK(contains(draft.text, "      qzeros: {shape: [in/128, out/8], dtype: [I32]}\n"));
      CHECK(contains(draft.text, "      scales: {shape: [in/128, out], dtype: [F16]}\n"));
      CHECK(contains(draft.text, "  n_experts:\n    default: 8\n"));
      const std::string block = style == "hf" ? "model.layers.1.mlp" : "layers.1.ffn";
      const std::string expert = style == "hf" ? ".experts.5.down_proj.qzeros" : ".experts.5.w2.qzeros";
      const Decision owned = decide(draft, block + expert, 8);
      REQUIRE(owned.owner.has_value());
      CHECK(owned.owner->index == 5);
      CHECK(owned.owner->count == 8);
      const std::string shared =
          style == "hf" ? ".shared_experts.down_proj.qzeros" : ".shared_experts.w2.qzeros";
      CHECK_FALSE(decide(draft, block + shared, 8).owner.has_value());
      CHECK(decide(draft, block + shared, 8).split == Split::in);  // [256, 1024] writes the hidden size
      // The router's out is the expert count: replicated, not split.
      CHECK(decide(draft, block + ".gate.weight", 8).split == Split::replicate);
      // Parameters directly under a layer are their own keys (not the layer's index).
      const Decision hc =
          decide(draft, style == "hf" ? "model.layers.0.hc_attn_fn" : "layers.0.hc_attn_fn", 8);
      CHECK(hc.key == "hc_attn_fn");
    }
  }
}

TEST_CASE("scaffold: AWQ packing along out, group size from the shapes") {
  TempDir dir;
  std::vector<TensorSpec> specs = {{"model.embed_tokens.weight", DType::F16, {1001, 256}},
                                   {"model.norm.weight", DType::F16, {256}},
                                   {"lm_head.weight", DType::F16, {1001, 256}}};
  const auto awq = [&](const std::string& base, std::uint64_t out, std::uint64_t in) {
    specs.push_back({base + ".qweight", DType::I32, {in, out / 8}});
    specs.push_back({base + ".qzeros", DType::I32, {in / 64, out / 8}});
    specs.push_back({base + ".scales", DType::F16, {in / 64, out}});
  };
  for (const std::string layer : {"0", "1"}) {
    const std::string p = "model.layers." + layer + ".";
    awq(p + "self_attn.q_proj", 256, 256);
    awq(p + "self_attn.o_proj", 256, 256);
    awq(p + "mlp.up_proj", 512, 256);
    awq(p + "mlp.down_proj", 256, 512);
    specs.push_back({p + "input_layernorm.weight", DType::F16, {256}});
  }
  const Draft draft = scaffold_specs(dir, specs, 2);
  INFO(draft.text);
  CHECK(contains(draft.text, "  awq-int4-g64:\n"));
  CHECK(contains(draft.text, "      qweight: {shape: [in, out/8], dtype: [I32]}\n"));
  CHECK(contains(draft.text, "      qzeros: {shape: [in/64, out/8], dtype: [I32]}\n"));
  CHECK(decide(draft, "model.layers.0.mlp.up_proj.qweight", 2).split == Split::out);
  CHECK(decide(draft, "model.layers.0.mlp.down_proj.scales", 2).split == Split::in);
  CHECK(decide(draft, "model.layers.1.input_layernorm.weight", 2).split == Split::replicate);
  // vocab 1001 does not divide over 2 ranks: the embedding falls back to its hidden dim.
  CHECK(decide(draft, "model.embed_tokens.weight", 2).split == Split::in);
  CHECK(
      contains(draft.text, "not out at mp=2: model.embed_tokens.weight: out=1001 is not a multiple of mp=2"));
  CHECK_FALSE(contains(draft.text, "ownership:"));
}

TEST_CASE("scaffold: GPTQ g_idx and bias beside packed groups follow the split or are replicated") {
  TempDir dir;
  std::vector<TensorSpec> specs;
  const auto linear = [&](const std::string& base, std::uint64_t out, std::uint64_t in) {
    specs = specs + shardwise::test::packed(base, out, in);
    specs.push_back({base + ".g_idx", DType::I32, {in}});
    specs.push_back({base + ".bias", DType::F16, {out}});
  };
  linear("l.0.mlp.gate", 512, 256);
  linear("l.0.mlp.up", 512, 256);
  linear("l.0.mlp.down", 256, 512);
  const Draft draft = scaffold_specs(dir, specs, 2);
  INFO(draft.text);
  CHECK(decide(draft, "l.0.mlp.up.qweight", 2).split == Split::out);
  CHECK(decide(draft, "l.0.mlp.up.bias", 2).split == Split::out);
  CHECK(decide(draft, "l.0.mlp.up.g_idx", 2).split == Split::replicate);  // [in]: every rank needs it
  CHECK(decide(draft, "l.0.mlp.down.qzeros", 2).split == Split::in);
  CHECK(decide(draft, "l.0.mlp.down.g_idx", 2).split == Split::replicate);  // 1-D: `in` splits dim 1
  CHECK(decide(draft, "l.0.mlp.down.bias", 2).split == Split::replicate);
}

TEST_CASE("scaffold: FP8 weights with block scales keep whole blocks on each rank") {
  TempDir dir;
  std::vector<TensorSpec> specs = {{"embed.weight", DType::BF16, {512, 512}},
                                   {"norm.weight", DType::BF16, {512}}};
  for (const std::string layer : {"0", "1"}) {
    const std::string p = "layers." + layer + ".attn.";
    specs.push_back({p + "wq.weight", DType::F8_E4M3, {1024, 512}});
    specs.push_back({p + "wq.weight_scale_inv", DType::F32, {8, 4}});
    specs.push_back({p + "wkv_a.weight", DType::F8_E4M3, {320, 512}});  // 320 = 2.5 blocks
    specs.push_back({p + "wkv_a.weight_scale_inv", DType::F32, {3, 4}});
    specs.push_back({p + "wkv_a.input_scale", DType::F32, {}});
    specs.push_back({p + "wo.weight", DType::F8_E4M3, {512, 1024}});
    specs.push_back({p + "wo.weight_scale_inv", DType::F32, {4, 8}});
  }
  const Draft draft = scaffold_specs(dir, specs, 2);
  INFO(draft.text);
  CHECK(contains(draft.text, "# F8_E4M3 weights with block scales: 6 pairs, blocks of 128x128"));
  CHECK_FALSE(contains(draft.text, "layouts:"));
  CHECK(decide(draft, "layers.0.attn.wq.weight_scale_inv", 2).split == Split::out);
  CHECK(decide(draft, "layers.1.attn.wo.weight", 2).split == Split::in);
  // A partial last block cannot be split: the other dim is, and the per-tensor scale is replicated.
  CHECK(decide(draft, "layers.0.attn.wkv_a.weight", 2).split == Split::in);
  CHECK(decide(draft, "layers.0.attn.wkv_a.weight_scale_inv", 2).split == Split::in);
  CHECK(decide(draft, "layers.0.attn.wkv_a.input_scale", 2).split == Split::replicate);
  CHECK(contains(draft.text, "    split: replicate  # input_scale [] has no entries on in\n"));
}

TEST_CASE("scaffold: Qwen-MoE-style experts become ownership, routers and side modules do not") {
  TempDir dir;
  std::vector<TensorSpec> specs = {{"model.embed_tokens.weight", DType::BF16, {1024, 128}},
                                   {"model.norm.weight", DType::BF16, {128}},
                                   {"lm_head.weight", DType::BF16, {1024, 128}}};
  const auto mlp = [&](const std::string& base, std::uint64_t inter) {
    specs.push_back({base + ".gate_proj.weight", DType::BF16, {inter, 128}});
    specs.push_back({base + ".up_proj.weight", DType::BF16, {inter, 128}});
    specs.push_back({base + ".down_proj.weight", DType::BF16, {128, inter}});
  };
  for (const std::string layer : {"0", "1", "2"}) {
    const std::string p = "model.layers." + layer + ".";
    for (const std::string proj : {"q_proj", "k_proj", "v_proj"}) {
      specs.push_back(
          {p + "self_attn." + proj + ".weight", DType::BF16, {proj == "q_proj" ? 128u : 64u, 128}});
      specs.push_back({p + "self_attn." + proj + ".bias", DType::BF16, {proj == "q_proj" ? 128u : 64u}});
    }
    specs.push_back({p + "self_attn.o_proj.weight", DType::BF16, {128, 128}});
    specs.push_back({p + "input_layernorm.weight", DType::BF16, {128}});
    specs.push_back({p + "mlp.gate.weight", DType::BF16, {6, 128}});
    for (int e = 0; e < 6; ++e) mlp(p + "mlp.experts." + std::to_string(e), 64);
    mlp(p + "mlp.shared_expert", 256);
    specs.push_back({p + "mlp.shared_expert.down_proj.bias", DType::BF16, {128}});
    specs.push_back({p + "mlp.shared_expert_gate.weight", DType::BF16, {1, 128}});
  }
  const Draft draft = scaffold_specs(dir, specs, 2);
  INFO(draft.text);
  CHECK(contains(draft.text,
                 "  n_experts:\n    default: 6\n    help: 'experts per model.layers.N.mlp.experts "
                 "(found 6 in each of 3)'\n"));
  CHECK(contains(draft.text,
                 "    match: '(?:^|\\.)experts\\.(?P<index>[0-9]+)(?:\\.|$)'\n    count: n_experts\n"));
  const Decision expert = decide(draft, "model.layers.2.mlp.experts.5.up_proj.weight", 2);
  REQUIRE(expert.owner.has_value());
  CHECK(expert.owner->index == 5);
  CHECK_FALSE(decide(draft, "model.layers.0.self_attn.q_proj.weight", 2).owner.has_value());
  CHECK(decide(draft, "model.layers.0.self_attn.k_proj.bias", 2).split == Split::out);
  CHECK(decide(draft, "model.layers.0.mlp.gate.weight", 2).split == Split::replicate);
  CHECK(decide(draft, "model.layers.0.mlp.shared_expert.down_proj.weight", 2).split == Split::in);
  // A bias along out under an in split is replicated by an override.
  CHECK(decide(draft, "model.layers.0.mlp.shared_expert.down_proj.bias", 2).split == Split::replicate);
  CHECK(contains(draft.text,
                 "    match: '(?:^|\\.)down_proj\\.bias$'\n    split: replicate  # bias [128] has one dim, "
                 "and `in` splits dim 1\n"));
}

TEST_CASE("scaffold: names that need quoting and escaping, tensors without entries") {
  TempDir dir;
  const std::vector<TensorSpec> specs = {{"blk.0.it's: #1.weight", DType::F32, {8, 4}},
                                         {"blk.0.true.weight", DType::F32, {4}},
                                         {"blk.0.a+b.0", DType::F32, {2}},
                                         {"blk.1.it's: #1.weight", DType::F32, {8, 4}},
                                         {"blk.1.true.weight", DType::F32, {4}},
                                         {"blk.1.a+b.0", DType::F32, {2}},
                                         {"blk.1.it's: #1.bias", DType::F32, {0}},  // no entries
                                         {"blk.1.empty.weight", DType::F32, {0, 4}},
                                         {"scalar", DType::F32, {}}};
  const Draft draft = scaffold_specs(dir, specs, 2);
  CHECK(decide(draft, "blk.1.it's: #1.weight", 2).key == "it's: #1");
  CHECK(decide(draft, "blk.1.true.weight", 2).key == "true");
  CHECK(decide(draft, "blk.0.a+b.0", 2).key == "a+b");
  CHECK(decide(draft, "scalar", 2).key == "scalar");
  CHECK(decide(draft, "blk.1.it's: #1.bias", 2).split == Split::replicate);

  // Text from the command line stays on its line and inside its quotes.
  const std::vector<TensorHeader> one = {{"x.weight", DType::F32, std::span<const std::uint64_t>()}};
  scaffold::ScaffoldOptions options = bundled_options();
  options.name = "it's\nmine";
  options.source = "/data/a\nb";
  const Rules loaded = Rules::load_text(scaffold::scaffold_rules(one, options), "draft.yaml");
  CHECK(loaded.name() == "it's?mine");
}

TEST_CASE("scaffold: checkpoints it cannot describe are refused, every problem named") {
  using Shape = st::Shape;
  struct Case {
    std::string what;
    std::vector<std::tuple<std::string, DType, Shape>> tensors;
    std::vector<std::string> messages;
  };
  const std::vector<Case> cases = {
      {"empty components",
       {{"a..weight", DType::F32, {4}}, {"b.", DType::F32, {4}}},
       {"'a..weight': component 2 is empty", "'b.': component 2 is empty"}},
      {"a control character", {{"a\nb", DType::F32, {4}}}, {"'a\\x0ab': a name with a control character"}},
      {"group sizes that differ",
       {{"x.qweight", DType::I32, {32, 64}},
        {"x.qzeros", DType::I32, {2, 8}},
        {"x.scales", DType::F16, {2, 64}},
        {"y.qweight", DType::I32, {32, 64}},
        {"y.qzeros", DType::I32, {4, 8}},
        {"y.scales", DType::F16, {4, 64}}},
       {"packed triples disagree: gptq packing 8 group 128 (1 triples, e.g. x); gptq packing 8 group 64 (1 "
        "triples, "
        "e.g. y)"}},
      {"a triple that fits no packing",
       {{"x.qweight", DType::I32, {32, 60}},
        {"x.qzeros", DType::I32, {2, 8}},
        {"x.scales", DType::F16, {2, 64}}},
       {"x: qweight [32, 60], qzeros [2, 8], scales [2, 64] fit neither GPTQ"}},
      {"a packed suffix outside a triple",
       {{"x.qweight", DType::I32, {32, 64}},
        {"x.qzeros", DType::I32, {2, 8}},
        {"x.scales", DType::F16, {2, 64}},
        {"norm.scales", DType::F16, {64}},
        {"blocks.0.qzeros", DType::F16, {64}}},
       {"norm: has 1 of the packed members qweight, qzeros, scales (a layout needs all three)",
        "blocks.0.qzeros: a parameter named like a packed member"}},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.what) {
      std::vector<TensorHeader> headers;
      for (const auto& [name, dtype, shape] : c.tensors) headers.push_back({name, dtype, shape});
      try {
        scaffold::scaffold_rules(headers, bundled_options());
        FAIL("no error");
      } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::input);
        for (const auto& m : c.messages) CHECK_THAT(e.what(), Catch::Contains(m));
      }
    }
  }
}

TEST_CASE("scaffold: the packed triple's suffixes come from a rules layout, by the members' shapes") {
  const auto packed = scaffold::packed_suffixes_of(Rules::bundled().layouts().front());
  REQUIRE(packed);
  CHECK(packed->weight == "qweight");
  CHECK(packed->zeros == "qzeros");
  CHECK(packed->scales == "scales");
  const std::vector<TensorHeader> one = {{"x.weight", DType::F32, std::span<const std::uint64_t>()}};
  CHECK_THROWS_AS(scaffold::scaffold_rules(one, scaffold::ScaffoldOptions{}), Error);
}
