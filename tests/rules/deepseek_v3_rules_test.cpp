// rules/deepseek-v3.yaml and rules/deepseek-v3.2.yaml against DeepSeek's own inference/convert.py
// (DeepSeek-V3, and V3.2-Exp's = V3's plus four indexer rows). Expectations are written from the
// script's code: skip names containing "model.layers.61", strip "model.", the four renames, key =
// second-to-last component (asserted to be in the mapping), mapping dim 0 -> out, 1 -> in, None ->
// replicate; routed experts (not shared) go whole to rank index / (n_experts / mp). The end-to-end
// case converts a small V3.2 checkpoint at mp=2 and compares every output file byte for byte with
// the file the script would write: safetensors' layout (dtype descending, then name), built here.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>

#include <shardwise/convert/converter.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "convert/fixture.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

using rules::Decision;
using rules::Rules;
using rules::Split;

Rules load(const std::string& file) { return Rules::load_file(source_dir() + "/rules/" + file); }

struct Case {
  const char* name;
  Decision::Kind kind;
  const char* output;  // place: the output name
  Split split;
  int owner_index;  // -1: not owned
};

constexpr auto P = Decision::Kind::place;
constexpr auto S = Decision::Kind::skip;
constexpr auto U = Decision::Kind::unmatched;
constexpr auto R = Split::replicate;
constexpr auto O = Split::out;
constexpr auto I = Split::in;

// Both files.
const Case kCommon[] = {
    {"model.embed_tokens.weight", P, "embed.weight", O, -1},
    {"lm_head.weight", P, "head.weight", O, -1},
    {"model.norm.weight", P, "norm.weight", R, -1},
    {"model.layers.0.input_layernorm.weight", P, "layers.0.attn_norm.weight", R, -1},
    {"model.layers.0.post_attention_layernorm.weight", P, "layers.0.ffn_norm.weight", R, -1},
    {"model.layers.0.self_attn.q_a_proj.weight", P, "layers.0.attn.wq_a.weight", R, -1},
    {"model.layers.0.self_attn.q_a_proj.weight_scale_inv", P, "layers.0.attn.wq_a.scale", R, -1},
    {"model.layers.0.self_attn.q_a_layernorm.weight", P, "layers.0.attn.q_norm.weight", R, -1},
    {"model.layers.0.self_attn.q_b_proj.weight", P, "layers.0.attn.wq_b.weight", O, -1},
    {"model.layers.0.self_attn.q_b_proj.weight_scale_inv", P, "layers.0.attn.wq_b.scale", O, -1},
    {"model.layers.0.self_attn.q_proj.weight", P, "layers.0.attn.wq.weight", O, -1},
    {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", P, "layers.0.attn.wkv_a.weight", R, -1},
    {"model.layers.0.self_attn.kv_a_layernorm.weight", P, "layers.0.attn.kv_norm.weight", R, -1},
    {"model.layers.0.self_attn.kv_b_proj.weight_scale_inv", P, "layers.0.attn.wkv_b.scale", O, -1},
    {"model.layers.0.self_attn.o_proj.weight", P, "layers.0.attn.wo.weight", I, -1},
    {"model.layers.0.self_attn.o_proj.weight_scale_inv", P, "layers.0.attn.wo.scale", I, -1},
    {"model.layers.0.mlp.gate_proj.weight", P, "layers.0.ffn.w1.weight", O, -1},
    {"model.layers.0.mlp.down_proj.weight_scale_inv", P, "layers.0.ffn.w2.scale", I, -1},
    {"model.layers.0.mlp.up_proj.weight", P, "layers.0.ffn.w3.weight", O, -1},
    {"model.layers.3.mlp.gate.weight", P, "layers.3.ffn.gate.weight", R, -1},
    {"model.layers.3.mlp.gate.e_score_correction_bias", P, "layers.3.ffn.gate.bias", R, -1},
    {"model.layers.3.mlp.shared_experts.down_proj.weight", P, "layers.3.ffn.shared_experts.w2.weight", I, -1},
    {"model.layers.3.mlp.shared_experts.up_proj.weight_scale_inv", P, "layers.3.ffn.shared_experts.w3.scale",
     O, -1},
    {"model.layers.3.mlp.experts.200.gate_proj.weight", P, "layers.3.ffn.experts.200.w1.weight", R, 200},
    {"model.layers.60.mlp.experts.255.down_proj.weight_scale_inv", P, "layers.60.ffn.experts.255.w2.scale", R,
     255},
    // The MTP layer: "model.layers.61" is a substring test in the script (61x too).
    {"model.layers.61.embed_tokens.weight", S, "", R, -1},
    {"model.layers.61.mlp.experts.3.up_proj.weight", S, "", R, -1},
    {"model.layers.61.shared_head.head.weight", S, "", R, -1},
    {"model.layers.612.input_layernorm.weight", S, "", R, -1},
    {"model.layers.6.input_layernorm.weight", P, "layers.6.attn_norm.weight", R, -1},
    // The script asserts the key is in its mapping.
    {"model.layers.1.self_attn.rotary_emb.inv_freq", U, "", R, -1},
    {"model.layers.1.mlp.experts.3.act.weight", U, "", R, -1},
    {"weight", U, "", R, -1},
};

// The four rows V3.2-Exp adds (its indexer), unknown to V3.
const Case kIndexerV32[] = {
    {"model.layers.2.self_attn.indexer.wq_b.weight", P, "layers.2.attn.indexer.wq_b.weight", R, -1},
    {"model.layers.2.self_attn.indexer.wq_b.weight_scale_inv", P, "layers.2.attn.indexer.wq_b.scale", R, -1},
    {"model.layers.2.self_attn.indexer.wk.weight", P, "layers.2.attn.indexer.wk.weight", R, -1},
    {"model.layers.2.self_attn.indexer.k_norm.weight", P, "layers.2.attn.indexer.k_norm.weight", R, -1},
    {"model.layers.2.self_attn.indexer.k_norm.bias", P, "layers.2.attn.indexer.k_norm.bias", R, -1},
    {"model.layers.2.self_attn.indexer.weights_proj.weight", P, "layers.2.attn.indexer.weights_proj.weight",
     R, -1},
};

void check_case(const Rules& rules, const rules::Params& params, const Case& c) {
  INFO(c.name);
  const Decision d = rules.decide(c.name, params);
  REQUIRE(d.kind == c.kind);
  if (c.kind != P) return;
  CHECK(d.output == c.output);
  CHECK(d.layout == nullptr);
  if (c.owner_index < 0) {
    CHECK(!d.owner);
    CHECK(d.split == c.split);
  } else {
    REQUIRE(d.owner);
    CHECK(d.owner->index == static_cast<std::uint64_t>(c.owner_index));
    CHECK(d.owner->count == 256);
  }
}

TEST_CASE("deepseek-v3 rules decide as V3's convert.py") {
  const Rules rules = load("deepseek-v3.yaml");
  CHECK(rules.name() == "deepseek-v3");
  const auto params = rules.resolve_params({{"mp", 8}, {"n_experts", 256}});
  for (const Case& c : kCommon) check_case(rules, params, c);
  for (const Case& c : kIndexerV32) {
    INFO(c.name);
    CHECK(rules.decide(c.name, params).kind == U);
  }
}

TEST_CASE("deepseek-v3.2 rules decide as V3.2-Exp's convert.py") {
  const Rules rules = load("deepseek-v3.2.yaml");
  CHECK(rules.name() == "deepseek-v3.2");
  const auto params = rules.resolve_params({{"mp", 8}, {"n_experts", 256}});
  for (const Case& c : kCommon) check_case(rules, params, c);
  for (const Case& c : kIndexerV32) check_case(rules, params, c);
}

TEST_CASE("deepseek-v3 rules: --n-experts has no default, as in the script") {
  const Rules rules = load("deepseek-v3.yaml");
  CHECK_THROWS_AS(rules.resolve_params({{"mp", 2}}), Error);
}

// --- end to end -------------------------------------------------------------------------------

namespace fs = std::filesystem;

struct Input {
  RawTensor tensor;
  std::string file;
};

// A V3.2-shaped checkpoint in two files: every kind of row, sizes that split over mp=2.
std::vector<Input> v32_inputs() {
  std::uint32_t seed = 1;
  const auto t = [&seed](std::string name, std::string dtype, std::vector<std::uint64_t> shape,
                         std::string file) {
    std::uint64_t bytes = dtype == "F32" ? 4 : dtype == "BF16" ? 2 : 1;
    for (auto d : shape) bytes *= d;
    return Input{{std::move(name), std::move(dtype), std::move(shape), pattern_bytes(bytes, seed++)},
                 std::move(file)};
  };
  const std::string a = "model-00001-of-00002.safetensors";
  const std::string b = "model-00002-of-00002.safetensors";
  return {
      t("model.embed_tokens.weight", "BF16", {8, 4}, a),
      t("model.norm.weight", "BF16", {4}, a),
      t("model.layers.0.self_attn.q_b_proj.weight", "F8_E4M3", {4, 6}, a),
      t("model.layers.0.self_attn.q_b_proj.weight_scale_inv", "F32", {2, 1}, a),
      t("model.layers.0.self_attn.o_proj.weight", "F8_E4M3", {3, 8}, a),
      t("model.layers.0.self_attn.o_proj.weight_scale_inv", "F32", {1, 2}, a),
      t("model.layers.0.self_attn.indexer.wq_b.weight", "F8_E4M3", {4, 6}, a),
      t("model.layers.0.self_attn.indexer.k_norm.bias", "BF16", {4}, a),
      t("lm_head.weight", "BF16", {8, 4}, b),
      t("model.layers.1.mlp.gate.e_score_correction_bias", "F32", {2}, b),
      t("model.layers.1.mlp.experts.0.down_proj.weight", "F8_E4M3", {4, 4}, b),
      t("model.layers.1.mlp.experts.0.down_proj.weight_scale_inv", "F32", {1, 1}, b),
      t("model.layers.1.mlp.experts.0.up_proj.weight", "F8_E4M3", {4, 4}, b),
      t("model.layers.1.mlp.experts.1.down_proj.weight", "F8_E4M3", {4, 4}, b),
      t("model.layers.1.mlp.experts.1.down_proj.weight_scale_inv", "F32", {1, 1}, b),
      t("model.layers.1.mlp.experts.1.up_proj.weight", "F8_E4M3", {4, 4}, b),
      t("model.layers.1.mlp.shared_experts.gate_proj.weight", "F8_E4M3", {6, 4}, b),
      t("model.layers.61.self_attn.q_b_proj.weight", "F8_E4M3", {4, 6}, b),
  };
}

// What the script writes for rank `rank` of 2: (output name, input name, dim or -1 for whole).
struct Row {
  const char* output;
  const char* input;
  int dim;
};
const Row kRank0Only[] = {
    {"layers.1.ffn.experts.0.w2.weight", "model.layers.1.mlp.experts.0.down_proj.weight", -1},
    {"layers.1.ffn.experts.0.w2.scale", "model.layers.1.mlp.experts.0.down_proj.weight_scale_inv", -1},
    {"layers.1.ffn.experts.0.w3.weight", "model.layers.1.mlp.experts.0.up_proj.weight", -1}};
const Row kRank1Only[] = {
    {"layers.1.ffn.experts.1.w2.weight", "model.layers.1.mlp.experts.1.down_proj.weight", -1},
    {"layers.1.ffn.experts.1.w2.scale", "model.layers.1.mlp.experts.1.down_proj.weight_scale_inv", -1},
    {"layers.1.ffn.experts.1.w3.weight", "model.layers.1.mlp.experts.1.up_proj.weight", -1}};
const Row kEveryRank[] = {
    {"embed.weight", "model.embed_tokens.weight", 0},
    {"norm.weight", "model.norm.weight", -1},
    {"layers.0.attn.wq_b.weight", "model.layers.0.self_attn.q_b_proj.weight", 0},
    {"layers.0.attn.wq_b.scale", "model.layers.0.self_attn.q_b_proj.weight_scale_inv", 0},
    {"layers.0.attn.wo.weight", "model.layers.0.self_attn.o_proj.weight", 1},
    {"layers.0.attn.wo.scale", "model.layers.0.self_attn.o_proj.weight_scale_inv", 1},
    {"layers.0.attn.indexer.wq_b.weight", "model.layers.0.self_attn.indexer.wq_b.weight", -1},
    {"layers.0.attn.indexer.k_norm.bias", "model.layers.0.self_attn.indexer.k_norm.bias", -1},
    {"head.weight", "lm_head.weight", 0},
    {"layers.1.ffn.gate.bias", "model.layers.1.mlp.gate.e_score_correction_bias", -1},
    {"layers.1.ffn.shared_experts.w1.weight", "model.layers.1.mlp.shared_experts.gate_proj.weight", 0},
};

// safetensors' save_file order: dtype descending in its enum order, then name.
int dtype_order(const std::string& dtype) {
  const std::vector<std::string> ascending = {"F8_E4M3", "BF16", "F32"};
  return static_cast<int>(std::find(ascending.begin(), ascending.end(), dtype) - ascending.begin());
}

std::string expected_file(const std::vector<Input>& inputs, std::uint64_t rank) {
  std::vector<RawTensor> out;
  const auto add = [&](const Row& row) {
    const auto in = std::find_if(inputs.begin(), inputs.end(),
                                 [&](const Input& i) { return i.tensor.name == row.input; });
    REQUIRE(in != inputs.end());
    RawTensor t = in->tensor;
    t.name = row.output;
    if (row.dim >= 0) {
      const auto dim = static_cast<std::size_t>(row.dim);
      const std::uint64_t half = t.shape[dim] / 2;
      const std::size_t element = t.dtype == "F32" ? 4 : t.dtype == "BF16" ? 2 : 1;
      t.bytes = slice_bytes(t.bytes, t.shape, element, dim, rank * half, (rank + 1) * half);
      t.shape[dim] = half;
    }
    out.push_back(std::move(t));
  };
  for (const Row& row : kEveryRank) add(row);
  if (rank == 0) {
    for (const Row& row : kRank0Only) add(row);
  } else {
    for (const Row& row : kRank1Only) add(row);
  }
  std::sort(out.begin(), out.end(), [](const RawTensor& x, const RawTensor& y) {
    const int dx = dtype_order(x.dtype), dy = dtype_order(y.dtype);
    return dx != dy ? dx > dy : x.name < y.name;
  });
  return build_safetensors(out);
}

TEST_CASE("deepseek-v3.2 rules: a checkpoint converted at mp=2 is the script's output byte for byte") {
  TempDir dir;
  const fs::path in = dir / "in";
  fs::create_directories(in);
  const std::vector<Input> inputs = v32_inputs();
  std::map<std::string, std::vector<RawTensor>> files;
  for (const Input& i : inputs) files[i.file].push_back(i.tensor);
  for (const auto& [file, tensors] : files) write_file(in / file, build_safetensors(tensors));
  // The script copies every file whose name contains "token" (glob, so not a hidden one).
  for (const char* side : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "config.json", ".token_cache"}) {
    write_file(in / side, std::string("bytes of ") + side);
  }

  const Rules rules = load("deepseek-v3.2.yaml");
  const plan::Plan plan =
      plan::plan_checkpoint(st::Checkpoint::open(in.string()), rules, {2, {{"n_experts", 2}}});
  CHECK(plan.side_files ==
        std::vector<std::string>{"special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"});
  REQUIRE(plan.skipped.size() == 1);
  CHECK(plan.skipped[0].name == "model.layers.61.self_attn.q_b_proj.weight");

  convert::ConvertOptions options;
  options.run.output_dir = (dir / "out").string();
  options.run.progress = output::ProgressMode::quiet;
  options.run.threads = 2;
  convert::convert_plan(plan, options);

  for (std::uint64_t rank = 0; rank < 2; ++rank) {
    INFO("rank " << rank);
    const std::string file = "model" + std::to_string(rank) + "-mp2.safetensors";
    CHECK(read_file(dir / "out" / file) == expected_file(inputs, rank));
  }
  for (const char* side : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    CHECK(read_file(dir / "out" / side) == std::string("bytes of ") + side);
  }
  CHECK(!fs::exists(dir / "out" / "config.json"));
  CHECK(!fs::exists(dir / "out" / ".token_cache"));
}

TEST_CASE("deepseek-v3 rules refuse what the script would assert on, naming every tensor") {
  TempDir dir;
  const fs::path in = dir / "in";
  fs::create_directories(in);
  std::vector<RawTensor> tensors;
  for (const Input& i : v32_inputs()) tensors.push_back(i.tensor);
  write_file(in / "model.safetensors", build_safetensors(tensors));
  const Rules rules = load("deepseek-v3.yaml");
  try {
    plan::plan_checkpoint(st::Checkpoint::open(in.string()), rules, {2, {{"n_experts", 2}}});
    FAIL("planned a V3.2 checkpoint with the V3 rules");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("model.layers.0.self_attn.indexer.k_norm.bias"));
    CHECK_THAT(what, Catch::Contains("key 'k_norm' is not in the table"));
    // wq_b is in V3's table (the MLA's q_b_proj becomes wq_b), but the indexer's tensor is named
    // wq_b already and is not: V3 has no row for it.
    CHECK_THAT(what, Catch::Contains("model.layers.0.self_attn.indexer.wq_b.weight"));
  }
}

}  // namespace
}  // namespace shardwise::test
