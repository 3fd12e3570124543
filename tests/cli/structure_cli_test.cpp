// Fused, stacked and unfused outputs end to end, with the shipped rules/examples (llama-tp-fused,
// moe-stacked-experts, phi3-unfuse): small checkpoints written here (every element a distinct
// 16-bit pattern), converted at mp 1, 2 and 4, every output tensor compared with what this file
// builds by slicing the inputs by hand (STRUCTURE_OPS' formulas, not the planner's), every folder
// verified; a missing part and a wrong-sized part refused by name.

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/bf16_tensors.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::read_file;
using shardwise::test::run_shardwise;
using shardwise::test::source_dir;
using shardwise::test::TempDir;
using shardwise::test::write_file;
using namespace shardwise::test::bf16;

namespace {

void convert_and_check(const fs::path& in, const std::string& rules, std::uint64_t mp,
                       const std::vector<std::string>& params, const Tensors& expected) {
  TempDir out;
  std::vector<std::string> args = {
      "convert",          "-i",      in.string(), "-o", (out / "o").string(), "-m",
      std::to_string(mp), "--rules", rules,       "-q"};
  args.insert(args.end(), params.begin(), params.end());
  const auto run = run_shardwise(args);
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  compare(expected, read_outputs(out / "o"));
  std::vector<std::string> verify = {
      "verify", "-i", in.string(), "-o", (out / "o").string(), "-m", std::to_string(mp), "--rules", rules};
  verify.insert(verify.end(), params.begin(), params.end());
  const auto checked = run_shardwise(verify);
  INFO(checked.out << checked.err);
  CHECK(checked.exit_code == 0);
}

std::string rank_file(std::uint64_t r) { return "rank" + std::to_string(r) + ".safetensors:"; }

// ---- Llama / Qwen2 dense -> per-rank fused qkv and gate_up ----------------------------------------

constexpr std::uint64_t kHeads = 8, kKvHeads = 2, kHeadDim = 4, kHidden = 16, kInter = 24, kVocab = 32;
constexpr int kLayers = 2;

Tensors llama_checkpoint() {
  std::uint32_t next = 1;
  Tensors t;
  t["model.embed_tokens.weight"] = make({kVocab, kHidden}, next);
  t["lm_head.weight"] = make({kVocab, kHidden}, next);
  t["model.norm.weight"] = make({kHidden}, next);
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t[p + "self_attn.q_proj.weight"] = make({kHeads * kHeadDim, kHidden}, next);
    t[p + "self_attn.k_proj.weight"] = make({kKvHeads * kHeadDim, kHidden}, next);
    t[p + "self_attn.v_proj.weight"] = make({kKvHeads * kHeadDim, kHidden}, next);
    t[p + "self_attn.q_proj.bias"] = make({kHeads * kHeadDim}, next);
    t[p + "self_attn.k_proj.bias"] = make({kKvHeads * kHeadDim}, next);
    t[p + "self_attn.v_proj.bias"] = make({kKvHeads * kHeadDim}, next);
    t[p + "self_attn.o_proj.weight"] = make({kHidden, kHeads * kHeadDim}, next);
    t[p + "mlp.gate_proj.weight"] = make({kInter, kHidden}, next);
    t[p + "mlp.up_proj.weight"] = make({kInter, kHidden}, next);
    t[p + "mlp.down_proj.weight"] = make({kHidden, kInter}, next);
    t[p + "input_layernorm.weight"] = make({kHidden}, next);
    t[p + "post_attention_layernorm.weight"] = make({kHidden}, next);
  }
  return t;
}

// Rank r's key or value rows: its block of heads, or with fewer heads than ranks the one head
// g = r * KV / M (STRUCTURE_OPS 2.2).
Tensor kv_rows(const Tensor& t, std::uint64_t r, std::uint64_t mp) {
  if (kKvHeads >= mp) return block(t, 0, r, mp);
  const std::uint64_t g = r * kKvHeads / mp;
  return rows(t, g * kHeadDim, (g + 1) * kHeadDim);
}

Tensors llama_expected(const Tensors& in, std::uint64_t mp) {
  Tensors e;
  for (std::uint64_t r = 0; r < mp; ++r) {
    const std::string f = rank_file(r);
    e[f + "embed_tokens.weight"] = block(in.at("model.embed_tokens.weight"), 0, r, mp);
    e[f + "lm_head.weight"] = block(in.at("lm_head.weight"), 0, r, mp);
    e[f + "norm.weight"] = in.at("model.norm.weight");
    for (int l = 0; l < kLayers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const std::string o = f + "layers." + std::to_string(l) + ".";
      for (const std::string param : {"weight", "bias"}) {
        e[o + "attn.qkv." + param] = cat({block(in.at(p + "self_attn.q_proj." + param), 0, r, mp),
                                          kv_rows(in.at(p + "self_attn.k_proj." + param), r, mp),
                                          kv_rows(in.at(p + "self_attn.v_proj." + param), r, mp)});
      }
      e[o + "attn.o_proj.weight"] = block(in.at(p + "self_attn.o_proj.weight"), 1, r, mp);
      e[o + "mlp.gate_up.weight"] = cat({block(in.at(p + "mlp.gate_proj.weight"), 0, r, mp),
                                         block(in.at(p + "mlp.up_proj.weight"), 0, r, mp)});
      e[o + "mlp.down_proj.weight"] = block(in.at(p + "mlp.down_proj.weight"), 1, r, mp);
      e[o + "input_layernorm.weight"] = in.at(p + "input_layernorm.weight");
      e[o + "post_attention_layernorm.weight"] = in.at(p + "post_attention_layernorm.weight");
    }
  }
  return e;
}

const std::string kLlamaRules = source_dir() + "/rules/examples/llama-tp-fused.yaml";
const nlohmann::json kLlamaConfig = {{"num_attention_heads", kHeads}, {"num_key_value_heads", kKvHeads}};

}  // namespace

TEST_CASE("llama-tp-fused writes each rank's qkv as cat(q_r, k_r, v_r) and gate_up as cat(gate_r, up_r)") {
  TempDir dir;
  const Tensors in = llama_checkpoint();
  write_safetensors(dir / "model.safetensors", in);
  write_config(dir.path(), kLlamaConfig);  // the head counts: no flag needed
  for (const std::uint64_t mp : {1u, 2u, 4u}) {
    INFO("mp=" << mp);
    convert_and_check(dir.path(), kLlamaRules, mp, {}, llama_expected(in, mp));
  }
}

TEST_CASE(
    "llama-tp-fused refuses a missing part and a part of the wrong size, naming the output and the part") {
  TempDir dir;
  Tensors in = llama_checkpoint();
  SECTION("missing") {
    in.erase("model.layers.1.self_attn.v_proj.weight");
    write_safetensors(dir / "model.safetensors", in);
    const auto run = run_shardwise(
        {"plan", "-i", dir.str(), "-m", "2", "--rules", kLlamaRules, "--heads", "8", "--kv-heads", "2"});
    CHECK(run.exit_code == 4);
    CHECK(run.err.find("layers.1.attn.qkv.weight on rank 0 (fuse[qkv] at") != std::string::npos);
    CHECK(run.err.find("missing part v_proj (present: q_proj, k_proj)") != std::string::npos);
  }
  SECTION("wrong size") {
    std::uint32_t next = 60000;
    in["model.layers.0.self_attn.k_proj.weight"] = make({kKvHeads * kHeadDim, kHidden + 2}, next);
    write_safetensors(dir / "model.safetensors", in);
    TempDir out;
    const auto run = run_shardwise({"convert", "-i", dir.str(), "-o", (out / "o").string(), "-m", "2",
                                    "--rules", kLlamaRules, "--heads", "8", "--kv-heads", "2", "-q"});
    CHECK(run.exit_code == 4);
    CHECK(run.err.find("layers.0.attn.qkv.weight on rank 0 (fuse[qkv] at") != std::string::npos);
    CHECK(run.err.find("part k_proj (model.layers.0.self_attn.k_proj.weight) is BF16[4, 18]") !=
          std::string::npos);
    CHECK_FALSE(shardwise::test::holds_rank_file(out / "o"));
  }
}

namespace {

// ---- Mixtral -> stacked experts, expert parallel ------------------------------------------------

constexpr std::uint64_t kExperts = 4, kExpertInter = 6;

Tensors mixtral_checkpoint() {
  std::uint32_t next = 7;
  Tensors t;
  t["model.embed_tokens.weight"] = make({kVocab, kHidden}, next);
  t["lm_head.weight"] = make({kVocab, kHidden}, next);
  t["model.norm.weight"] = make({kHidden}, next);
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t[p + "self_attn.q_proj.weight"] = make({kHeads * kHeadDim, kHidden}, next);
    t[p + "self_attn.o_proj.weight"] = make({kHidden, kHeads * kHeadDim}, next);
    t[p + "block_sparse_moe.gate.weight"] = make({kExperts, kHidden}, next);
    for (std::uint64_t e = 0; e < kExperts; ++e) {
      const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      t[x + "w1.weight"] = make({kExpertInter, kHidden}, next);
      t[x + "w2.weight"] = make({kHidden, kExpertInter}, next);
      t[x + "w3.weight"] = make({kExpertInter, kHidden}, next);
    }
    t[p + "input_layernorm.weight"] = make({kHidden}, next);
  }
  return t;
}

Tensors mixtral_expected(const Tensors& in, std::uint64_t mp) {
  Tensors e;
  for (std::uint64_t r = 0; r < mp; ++r) {
    const std::string f = rank_file(r);
    for (const auto& [name, t] : in) {
      if (name.find(".experts.") != std::string::npos) continue;
      std::string out = name;
      if (const auto at = out.find("block_sparse_moe"); at != std::string::npos) out.replace(at, 16, "mlp");
      e[f + out] = t;
    }
    for (int l = 0; l < kLayers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      std::vector<Tensor> gate_up, down;
      for (std::uint64_t x = r * kExperts / mp; x < (r + 1) * kExperts / mp; ++x) {
        const std::string n = p + "block_sparse_moe.experts." + std::to_string(x) + ".";
        gate_up.push_back(cat({in.at(n + "w1.weight"), in.at(n + "w3.weight")}));
        down.push_back(in.at(n + "w2.weight"));
      }
      e[f + p + "mlp.experts.gate_up_proj"] = stack(gate_up);
      e[f + p + "mlp.experts.down_proj"] = stack(down);
    }
  }
  return e;
}

const std::string kMoeRules = source_dir() + "/rules/examples/moe-stacked-experts.yaml";

}  // namespace

TEST_CASE("moe-stacked-experts stacks each rank's contiguous experts into gate_up_proj and down_proj") {
  TempDir dir;
  const Tensors in = mixtral_checkpoint();
  write_safetensors(dir / "model.safetensors", in);
  write_config(dir.path(), {{"num_local_experts", kExperts}});
  for (const std::uint64_t mp : {1u, 2u, 4u}) {
    INFO("mp=" << mp);
    const Tensors expected = mixtral_expected(in, mp);
    CHECK(expected.at(rank_file(0) + "model.layers.0.mlp.experts.gate_up_proj").shape ==
          Shape{kExperts / mp, 2 * kExpertInter, kHidden});
    convert_and_check(dir.path(), kMoeRules, mp, {}, expected);
  }
}

TEST_CASE("moe-stacked-experts refuses a layer missing an expert's part, naming the output") {
  TempDir dir;
  Tensors in = mixtral_checkpoint();
  in.erase("model.layers.1.block_sparse_moe.experts.2.w3.weight");
  write_safetensors(dir / "model.safetensors", in);
  const auto run =
      run_shardwise({"plan", "-i", dir.str(), "-m", "2", "--rules", kMoeRules, "--n-experts", "4"});
  CHECK(run.exit_code == 4);
  // The ownership rule's check names it first (its scope's experts are then not placed).
  CHECK(run.err.find("model.layers.1.mlp.experts.2: missing up_proj.weight") != std::string::npos);
}

namespace {

// ---- Phi-3 fused projections -> Llama names ------------------------------------------------------

constexpr std::uint64_t kPhiInter = 12;

Tensors phi3_checkpoint() {
  std::uint32_t next = 3;
  Tensors t;
  t["model.embed_tokens.weight"] = make({kVocab, kHidden}, next);
  t["lm_head.weight"] = make({kVocab, kHidden}, next);
  t["model.norm.weight"] = make({kHidden}, next);
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t[p + "self_attn.qkv_proj.weight"] = make({(kHeads + 2 * kKvHeads) * kHeadDim, kHidden}, next);
    t[p + "self_attn.o_proj.weight"] = make({kHidden, kHeads * kHeadDim}, next);
    t[p + "mlp.gate_up_proj.weight"] = make({2 * kPhiInter, kHidden}, next);
    t[p + "mlp.down_proj.weight"] = make({kHidden, kPhiInter}, next);
    t[p + "input_layernorm.weight"] = make({kHidden}, next);
    t[p + "post_attention_layernorm.weight"] = make({kHidden}, next);
  }
  return t;
}

Tensors phi3_expected(const Tensors& in, std::uint64_t mp) {
  Tensors e;
  constexpr std::uint64_t q_rows = kHeads * kHeadDim, kv = kKvHeads * kHeadDim;
  for (std::uint64_t r = 0; r < mp; ++r) {
    const std::string f = "model-rank" + std::to_string(r) + "-mp" + std::to_string(mp) + ".safetensors:";
    e[f + "model.embed_tokens.weight"] = block(in.at("model.embed_tokens.weight"), 0, r, mp);
    e[f + "lm_head.weight"] = block(in.at("lm_head.weight"), 0, r, mp);
    e[f + "model.norm.weight"] = in.at("model.norm.weight");
    for (int l = 0; l < kLayers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const Tensor& qkv = in.at(p + "self_attn.qkv_proj.weight");
      e[f + p + "self_attn.q_proj.weight"] = block(rows(qkv, 0, q_rows), 0, r, mp);
      e[f + p + "self_attn.k_proj.weight"] = kv_rows(rows(qkv, q_rows, q_rows + kv), r, mp);
      e[f + p + "self_attn.v_proj.weight"] = kv_rows(rows(qkv, q_rows + kv, q_rows + 2 * kv), r, mp);
      const Tensor& gate_up = in.at(p + "mlp.gate_up_proj.weight");
      e[f + p + "mlp.gate_proj.weight"] = block(rows(gate_up, 0, kPhiInter), 0, r, mp);
      e[f + p + "mlp.up_proj.weight"] = block(rows(gate_up, kPhiInter, 2 * kPhiInter), 0, r, mp);
      e[f + p + "self_attn.o_proj.weight"] = block(in.at(p + "self_attn.o_proj.weight"), 1, r, mp);
      e[f + p + "mlp.down_proj.weight"] = block(in.at(p + "mlp.down_proj.weight"), 1, r, mp);
      e[f + p + "input_layernorm.weight"] = in.at(p + "input_layernorm.weight");
      e[f + p + "post_attention_layernorm.weight"] = in.at(p + "post_attention_layernorm.weight");
    }
  }
  return e;
}

const std::string kPhiRules = source_dir() + "/rules/examples/phi3-unfuse.yaml";

}  // namespace

TEST_CASE(
    "phi3-unfuse cuts qkv_proj by heads : kv_heads : kv_heads and gate_up_proj in halves, then per rank") {
  TempDir dir;
  const Tensors in = phi3_checkpoint();
  write_safetensors(dir / "model.safetensors", in);
  write_config(dir.path(), kLlamaConfig);
  for (const std::uint64_t mp : {1u, 2u, 4u}) {
    INFO("mp=" << mp);
    convert_and_check(dir.path(), kPhiRules, mp, {}, phi3_expected(in, mp));
  }
}

TEST_CASE("the example rules' own tests pass") {
  for (const std::string& rules : {kLlamaRules, kMoeRules, kPhiRules}) {
    const auto run = run_shardwise({"rules", "check", rules});
    INFO(rules << "\n" << run.out << run.err);
    CHECK(run.exit_code == 0);
  }
}

TEST_CASE("rules check reports malformed fuse, unfuse and units entries at their lines") {
  TempDir dir;
  write_file(dir / "bad.yaml", R"(shardwise: 1
name: bad
params:
  heads: {default: 8}
output: {file: "r{rank}.safetensors"}
keys:
  - {match: '(?P<key>[a-z_]+)\.weight$'}
table:
  q_proj: {split: out, units: haeds}
fuse:
  - {name: a, match: '(?P<m>x)\.(?P<part>q|k)$', output: '{m}.qk', parts: [q, k], stack: true}
  - {name: b, match: 'y$', output: '{nope}.y', parts: [q, k]}
unfuse:
  - {name: c, match: '^z$', dim: 1, into: [{name: z1}]}
)");
  const auto run = run_shardwise({"rules", "check", (dir / "bad.yaml").string()});
  INFO(run.err);
  CHECK(run.exit_code == 3);
  CHECK(run.err.find("bad.yaml:9:31: 'units' of table entry 'q_proj' names an undefined parameter 'haeds' "
                     "(did you mean 'heads'?)") != std::string::npos);
  CHECK(run.err.find("a stacking fuse rule (stack: true) needs an (?P<index>...) group") !=
        std::string::npos);
  CHECK(run.err.find("fuse rule lists 'parts' but its match has no (?P<part>...) group") !=
        std::string::npos);
  CHECK(run.err.find("unknown placeholder '{nope}'") != std::string::npos);
  CHECK(run.err.find("unfuse along dim 1 is not supported") != std::string::npos);
  CHECK(run.err.find("'into' of unfuse rule needs at least two chunks") != std::string::npos);
}

TEST_CASE("a fuse along dim 1 interleaves the parts' rows, each part cut for its rank first") {
  TempDir dir;
  write_file(dir / "side.yaml", R"(shardwise: 1
name: side-by-side
output: {file: "r{rank}.safetensors"}
keys:
  - {match: '(?P<key>[a-z]+)\.weight$'}
table:
  x: {split: out}
  y: {split: out}
  z: {split: in}
fuse:
  - {name: xy, match: '^(?P<m>[a-z]+)\.(?P<part>x|y)\.weight$', output: '{m}.xy.weight', parts: [x, y], dim: 1}
  - {name: zs, match: '^(?P<m>[a-z]+)\.(?P<index>[0-9]+)\.z\.weight$', output: '{m}.zs.weight', stack: true, dim: 1}
)");
  std::uint32_t next = 11;
  Tensors in;
  in["a.x.weight"] = make({4, 6}, next);
  in["a.y.weight"] = make({4, 2}, next);
  in["b.0.z.weight"] = make({3, 4}, next);
  in["b.1.z.weight"] = make({3, 4}, next);
  fs::create_directories(dir / "in");
  write_safetensors(dir / "in" / "model.safetensors", in);
  for (const std::uint64_t mp : {1u, 2u}) {
    INFO("mp=" << mp);
    Tensors expected;
    for (std::uint64_t r = 0; r < mp; ++r) {
      const std::string f = "r" + std::to_string(r) + ".safetensors:";
      const Tensor x = block(in.at("a.x.weight"), 0, r, mp);
      const Tensor y = block(in.at("a.y.weight"), 0, r, mp);
      Tensor xy{{x.shape[0], 8}, {}};
      for (std::uint64_t row = 0; row < x.shape[0]; ++row)
        xy.bytes += x.bytes.substr(row * 12, 12) + y.bytes.substr(row * 4, 4);
      expected[f + "a.xy.weight"] = xy;
      expected[f + "b.zs.weight"] =
          stack({block(in.at("b.0.z.weight"), 1, r, mp), block(in.at("b.1.z.weight"), 1, r, mp)});
    }
    convert_and_check(dir / "in", (dir / "side.yaml").string(), mp, {}, expected);
  }
}
