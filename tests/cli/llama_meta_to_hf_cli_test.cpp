// rules/examples/llama-meta-to-hf.yaml end to end: a small checkpoint in Meta's original layout
// (GQA: 4 query heads, 2 kv heads, head size 8; with params.json) converted by the binary, each
// output compared with what transformers' convert_llama_weights_to_hf.py writes, computed here
// (the names of its L244-L266, its `permute` as a view of [heads, hd/2, 2, cols] with dims 1 and 2
// swapped); then `convert --reverse` gives every Meta tensor back byte for byte; and the reversal of
// a conversion that skipped a tensor is refused, naming the rule.

#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "convert/fixture.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using namespace shardwise::test;

namespace {

const std::string kRules = source_dir() + "/rules/examples/llama-meta-to-hf.yaml";
constexpr std::uint64_t kHeads = 4, kKvHeads = 2, kHeadDim = 8, kDim = 32, kFfn = 48, kVocab = 20;

// transformers' permute(w, n_heads): w.view(n, rows/n/2, 2, cols).transpose(1, 2).reshape(rows, cols).
std::string permute(const std::string& bytes, std::uint64_t rows, std::uint64_t heads) {
  const std::size_t row = bytes.size() / rows;
  const std::uint64_t half = rows / heads / 2;
  std::string out;
  for (std::uint64_t h = 0; h < heads; ++h)
    for (std::uint64_t j = 0; j < 2; ++j)
      for (std::uint64_t i = 0; i < half; ++i) out += bytes.substr(((h * half + i) * 2 + j) * row, row);
  return out;
}

struct Meta {
  std::vector<RawTensor> tensors;
  // Meta name -> (HF name, expected HF bytes).
  std::map<std::string, std::pair<std::string, std::string>> expected;
};

Meta meta_checkpoint(bool rope_freqs) {
  Meta m;
  std::uint32_t seed = 1;
  const auto add = [&](const std::string& name, std::vector<std::uint64_t> shape, const std::string& hf,
                       std::uint64_t permute_heads = 0) {
    std::uint64_t n = 2;
    for (auto d : shape) n *= d;
    RawTensor t{name, "BF16", shape, pattern_bytes(n, seed++)};
    m.expected[name] = {hf, permute_heads ? permute(t.bytes, shape[0], permute_heads) : t.bytes};
    m.tensors.push_back(std::move(t));
  };
  add("tok_embeddings.weight", {kVocab, kDim}, "model.embed_tokens.weight");
  for (int l = 0; l < 2; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    const std::string hf = "model.layers." + std::to_string(l) + ".";
    add(p + "attention.wq.weight", {kHeads * kHeadDim, kDim}, hf + "self_attn.q_proj.weight", kHeads);
    add(p + "attention.wk.weight", {kKvHeads * kHeadDim, kDim}, hf + "self_attn.k_proj.weight", kKvHeads);
    add(p + "attention.wv.weight", {kKvHeads * kHeadDim, kDim}, hf + "self_attn.v_proj.weight");
    add(p + "attention.wo.weight", {kDim, kHeads * kHeadDim}, hf + "self_attn.o_proj.weight");
    add(p + "feed_forward.w1.weight", {kFfn, kDim}, hf + "mlp.gate_proj.weight");
    add(p + "feed_forward.w2.weight", {kDim, kFfn}, hf + "mlp.down_proj.weight");
    add(p + "feed_forward.w3.weight", {kFfn, kDim}, hf + "mlp.up_proj.weight");
    add(p + "attention_norm.weight", {kDim}, hf + "input_layernorm.weight");
    add(p + "ffn_norm.weight", {kDim}, hf + "post_attention_layernorm.weight");
  }
  add("norm.weight", {kDim}, "model.norm.weight");
  add("output.weight", {kVocab, kDim}, "lm_head.weight");
  if (rope_freqs) {
    m.tensors.push_back({"rope.freqs", "F32", {kHeadDim / 2}, pattern_bytes(16, 99)});
  }
  return m;
}

void write_meta(const fs::path& in, const Meta& m) {
  fs::create_directories(in);
  write_file(in / "consolidated.00.safetensors", build_safetensors(m.tensors));
  write_file(
      in / "params.json",
      R"({"dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 20, "norm_eps": 1e-05})");
}

std::map<std::string, ParsedTensor> every_tensor(const fs::path& folder) {
  std::map<std::string, ParsedTensor> all;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() != ".safetensors") continue;
    for (auto& [name, t] : parse_safetensors(read_file(entry.path()))) REQUIRE(all.emplace(name, t).second);
  }
  return all;
}

TEST_CASE(
    "llama-meta-to-hf: Meta's names and interleaved q/k -> Hugging Face's, then reversed byte for byte") {
  TempDir dir;
  const Meta meta = meta_checkpoint(false);
  write_meta(dir / "meta", meta);
  const auto converted = run_shardwise(
      {"convert", "-i", (dir / "meta").string(), "-o", (dir / "hf").string(), "--rules", kRules, "-q"});
  INFO(converted.err);
  REQUIRE(converted.exit_code == 0);
  CHECK(fs::exists(dir / "hf" / "model.safetensors"));
  CHECK(read_file(dir / "hf" / "params.json") == read_file(dir / "meta" / "params.json"));
  const auto hf = every_tensor(dir / "hf");
  CHECK(hf.size() == meta.expected.size());
  for (const auto& [meta_name, want] : meta.expected) {
    INFO(meta_name << " -> " << want.first);
    const auto found = hf.find(want.first);
    REQUIRE(found != hf.end());
    CHECK(found->second.dtype == "BF16");
    CHECK(found->second.bytes == want.second);
  }
  const auto verified = run_shardwise(
      {"verify", "-i", (dir / "meta").string(), "-o", (dir / "hf").string(), "--rules", kRules, "-q"});
  INFO(verified.err);
  CHECK(verified.exit_code == 0);

  const auto reversed = run_shardwise(
      {"convert", "--reverse", "-i", (dir / "hf").string(), "-o", (dir / "back").string(), "-q"});
  INFO(reversed.err);
  REQUIRE(reversed.exit_code == 0);
  const auto back = every_tensor(dir / "back");
  REQUIRE(back.size() == meta.tensors.size());
  for (const RawTensor& t : meta.tensors) {
    INFO(t.name);
    REQUIRE(back.count(t.name) == 1);
    CHECK(back.at(t.name).dtype == t.dtype);
    CHECK(back.at(t.name).shape == t.shape);
    CHECK(back.at(t.name).bytes == t.bytes);
  }
}

TEST_CASE("llama-meta-to-hf: a checkpoint with rope.freqs converts (skipped) and its reversal is refused") {
  TempDir dir;
  write_meta(dir / "meta", meta_checkpoint(true));
  const auto converted = run_shardwise(
      {"convert", "-i", (dir / "meta").string(), "-o", (dir / "hf").string(), "--rules", kRules, "-q"});
  INFO(converted.err);
  REQUIRE(converted.exit_code == 0);
  const auto reversed = run_shardwise(
      {"convert", "--reverse", "-i", (dir / "hf").string(), "-o", (dir / "back").string(), "-q"});
  CHECK(reversed.exit_code == 4);
  CHECK_THAT(reversed.err, Catch::Contains("1 tensor dropped by skip: rope-freqs") &&
                               Catch::Contains("(the first: rope.freqs)"));
  CHECK(!fs::exists(dir / "back" / "model.safetensors"));
  const auto usage = run_shardwise(
      {"convert", "--reverse", "-i", (dir / "hf").string(), "-o", (dir / "back").string(), "-m", "2"});
  CHECK(usage.exit_code == 2);
  CHECK_THAT(usage.err, Catch::Contains("--model-parallel cannot be given with it"));
}

}  // namespace
