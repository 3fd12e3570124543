#pragma once
// The tensor inventory of a DeepSeek-V4 W4A16 (GPTQ-packed) checkpoint, from a configuration:
// every tensor of DEEPSEEK_V4.md's per-block table (`layers.L.` and `mtp.M.`), the top level and
// the MTP blocks' extras, with names in the inference style (as released) or the older HF/V3 style.
// Model knowledge belongs here (tools/), never in src/ or include/.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <shardwise/safetensors/dtype.hpp>

namespace gen {

using shardwise::st::DType;
using shardwise::st::Shape;

struct ModelConfig {
  std::string name;
  std::uint64_t dim = 0;  // D
  unsigned layers = 0;
  std::uint64_t heads = 0;  // H
  std::uint64_t head_dim = 0;
  std::uint64_t q_lora_rank = 0;
  std::uint64_t o_groups = 0;
  std::uint64_t o_lora_rank = 0;
  std::uint64_t experts = 0;           // E, routed
  std::uint64_t moe_inter_dim = 0;     // I
  std::uint64_t vocab = 0;             // V
  unsigned hash_layers = 0;            // layers [0, hash_layers) route by tid2eid
  std::vector<unsigned> first_ratios;  // compress ratios of the first layers; then 4, 128, 4, ...
  unsigned mtp_ratio = 0;
  unsigned mtp_blocks = 1;        // mtp.0 .. mtp.(N-1); the V4.1 "DSpark" variant has 3
  std::uint64_t mtp_experts = 0;  // routed experts of each MTP block's MoE; 0: as the backbone's
  bool markov_head = false;       // DSpark's markov_head.markov_w1.weight
  bool mtp_embed_head = false;    // emit mtp.0 embed/head copies (the reference skips them)
  bool tokenizer = false;
};

// Constants shared by both released sizes.
inline constexpr std::uint64_t kHcMult = 4;
inline constexpr std::uint64_t kHcRows = 24;  // hc_{attn,ffn}_fn rows, _base length
inline constexpr std::uint64_t kHcScale = 3;
inline constexpr std::uint64_t kIndexerHeads = 64;
inline constexpr std::uint64_t kIndexerHeadDim = 128;
inline constexpr std::uint64_t kTopK = 6;         // tid2eid columns
inline constexpr std::uint64_t kGroupSize = 128;  // GPTQ quantisation group
inline constexpr std::uint64_t kPack = 8;         // 4-bit values per int32

inline ModelConfig config_named(const std::string& name) {
  ModelConfig c;
  c.name = name;
  if (name == "flash") {
    c.dim = 4096, c.layers = 43, c.heads = 64, c.head_dim = 512, c.q_lora_rank = 1024;
    c.o_groups = 8, c.o_lora_rank = 1024, c.experts = 256, c.moe_inter_dim = 2048, c.vocab = 129280;
    c.hash_layers = 3, c.first_ratios = {0, 0};
  } else if (name == "pro") {
    c.dim = 7168, c.layers = 61, c.heads = 128, c.head_dim = 512, c.q_lora_rank = 1536;
    c.o_groups = 16, c.o_lora_rank = 1024, c.experts = 384, c.moe_inter_dim = 3072, c.vocab = 129280;
    c.hash_layers = 3, c.first_ratios = {128, 128};
  } else if (name == "tiny") {
    // Every split works at mp 1, 2, 4 and 8: column outs are multiples of 64, row ins of 1024,
    // H and V divisible by 8. The indexer keeps its real 64 heads (weights_proj out = 64).
    c.dim = 256, c.layers = 3, c.heads = 8, c.head_dim = 64, c.q_lora_rank = 256;
    c.o_groups = 2, c.o_lora_rank = 512, c.experts = 8, c.moe_inter_dim = 1024, c.vocab = 1024;
    c.hash_layers = 1, c.first_ratios = {0};
    c.mtp_embed_head = true, c.tokenizer = true;
  } else {
    throw std::invalid_argument("unknown config '" + name + "' (expected tiny, flash or pro)");
  }
  return c;
}

// Layer l's compress ratio: the configured first entries, then 4, 128 alternating (the released
// lists `[0,0] + [4,128]*20 + [4,0]` and `[128,128] + [4,128]*29 + [4,0]` follow this rule, the
// trailing 0 being mtp.0's).
inline unsigned compress_ratio(const ModelConfig& c, unsigned layer) {
  if (layer < c.first_ratios.size()) return c.first_ratios[layer];
  return (layer - c.first_ratios.size()) % 2 == 0 ? 4 : 128;
}

enum class Style { inference, hf };

// What the data of a tensor looks like (the generator fills accordingly).
enum class Fill { qweight, qzeros, scales, bf16, f32, tid2eid, g_idx };

struct TensorSpec {
  std::string name;       // as written, in the chosen style
  std::string seed_name;  // the inference-style name: seeds the data, so both styles hold equal bytes
  DType dtype;
  Shape shape;
  Fill fill;
};

struct InventoryOptions {
  Style style = Style::inference;
  bool quant_gate_embed = false;          // the "trap" upload: ffn.gate and embed GPTQ-quantised too
  DType scales_dtype = DType::F16;        // GPTQ scales as released (F16), or F32
  std::uint64_t group_size = kGroupSize;  // GPTQ quantisation group (input rows per scale)
  bool act_order = false;                 // GPTQ act-order: a `g_idx` I32 [in] beside each triple
};

// Builds the inventory; names come out in generation order (callers sort as they need).
class InventoryBuilder {
 public:
  InventoryBuilder(const ModelConfig& config, const InventoryOptions& options) : c_(config), o_(options) {}

  std::vector<TensorSpec> build() {
    for (unsigned l = 0; l < c_.layers; ++l)
      block("layers." + std::to_string(l) + ".", compress_ratio(c_, l), l < c_.hash_layers, c_.experts);
    for (unsigned b = 0; b < c_.mtp_blocks; ++b) {
      const std::string p = "mtp." + std::to_string(b) + ".";
      block(p, c_.mtp_ratio, false, c_.mtp_experts == 0 ? c_.experts : c_.mtp_experts);
      mtp_extras(p);
    }
    top_level();
    return std::move(out_);
  }

 private:
  // The HF/V3-style name of an inference-style path inside a block (`attn.wq_b`, `ffn.experts.3.w1`,
  // `attn_norm.weight`, ...). V4-only tensors keep their names, under self_attn / mlp.
  static std::string hf_path(const std::string& path) {
    static const std::vector<std::pair<std::string, std::string>> exact = {
        {"attn_norm.weight", "input_layernorm.weight"},
        {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"attn.wq_a", "self_attn.q_a_proj"},
        {"attn.q_norm.weight", "self_attn.q_a_layernorm.weight"},
        {"attn.wq_b", "self_attn.q_b_proj"},
        {"attn.wkv", "self_attn.kv_a_proj_with_mqa"},
        {"attn.kv_norm.weight", "self_attn.kv_a_layernorm.weight"},
        {"attn.wo_b", "self_attn.o_proj"},
        {"ffn.gate.bias", "mlp.gate.e_score_correction_bias"},
    };
    for (const auto& [from, to] : exact) {
      if (path == from) return to;
    }
    std::string p = path;
    if (p.rfind("attn.", 0) == 0) p = "self_attn." + p.substr(5);
    if (p.rfind("ffn.", 0) == 0) p = "mlp." + p.substr(4);
    if (p.find("experts.") != std::string::npos) {
      static const std::vector<std::pair<std::string, std::string>> mlp = {
          {".w1", ".gate_proj"}, {".w2", ".down_proj"}, {".w3", ".up_proj"}};
      for (const auto& [from, to] : mlp) {
        if (p.size() > from.size() && p.compare(p.size() - from.size(), from.size(), from) == 0) {
          return p.substr(0, p.size() - from.size()) + to;
        }
      }
    }
    return p;
  }

  // `prefix` is the block (`layers.3.`, `mtp.0.`) or empty; `path` the rest, inference style.
  std::string styled(const std::string& prefix, const std::string& path) const {
    if (o_.style == Style::inference) return prefix + path;
    if (prefix.empty()) {
      if (path == "head.weight") return "lm_head.weight";
      if (path == "embed.weight") return "model.embed_tokens.weight";
      if (path.rfind("embed.", 0) == 0) return "model.embed_tokens." + path.substr(6);
      return "model." + path;
    }
    for (const char* suffix :
         {".qweight", ".qzeros", ".scales", ".g_idx"}) {  // a triple member: map its linear
      const std::string s = suffix;
      if (path.size() > s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0) {
        return "model." + prefix + hf_path(path.substr(0, path.size() - s.size())) + s;
      }
    }
    return "model." + prefix + hf_path(path);
  }

  void tensor(const std::string& prefix, const std::string& path, DType dtype, Shape shape, Fill fill) {
    out_.push_back({styled(prefix, path), prefix + path, dtype, std::move(shape), fill});
  }

  // A GPTQ-packed linear (symmetric 4-bit, group 128 unless told): the qweight / qzeros / scales
  // triple, and with act-order the group index of each input channel (g_idx).
  void linear(const std::string& prefix, const std::string& path, std::uint64_t in, std::uint64_t out) {
    const std::uint64_t group = o_.group_size;
    if (group == 0 || in % group != 0 || in % kPack != 0 || out % kPack != 0) {
      throw std::invalid_argument(prefix + path + ": in=" + std::to_string(in) + " must be a multiple of " +
                                  std::to_string(group) + " and of 8, and out=" + std::to_string(out) +
                                  " of 8, for GPTQ packing");
    }
    tensor(prefix, path + ".qweight", DType::I32, {in / kPack, out}, Fill::qweight);
    tensor(prefix, path + ".qzeros", DType::I32, {in / group, out / kPack}, Fill::qzeros);
    tensor(prefix, path + ".scales", o_.scales_dtype, {in / group, out}, Fill::scales);
    if (o_.act_order) tensor(prefix, path + ".g_idx", DType::I32, {in}, Fill::g_idx);
  }

  void norm(const std::string& prefix, const std::string& path, std::uint64_t n) {
    tensor(prefix, path, DType::BF16, {n}, Fill::bf16);
  }

  void hyper_connections(const std::string& prefix, const std::string& which) {
    tensor(prefix, "hc_" + which + "_fn", DType::F32, {kHcRows, kHcMult * c_.dim}, Fill::f32);
    tensor(prefix, "hc_" + which + "_base", DType::F32, {kHcRows}, Fill::f32);
    tensor(prefix, "hc_" + which + "_scale", DType::F32, {kHcScale}, Fill::f32);
  }

  void compressor(const std::string& prefix, const std::string& path, unsigned ratio, std::uint64_t width,
                  std::uint64_t norm_dim) {
    linear(prefix, path + ".wkv", c_.dim, width);
    linear(prefix, path + ".wgate", c_.dim, width);
    tensor(prefix, path + ".ape", DType::F32, {ratio, width}, Fill::f32);
    norm(prefix, path + ".norm.weight", norm_dim);
  }

  void attention(const std::string& p, unsigned ratio) {
    const std::uint64_t hd = c_.head_dim;
    linear(p, "attn.wq_a", c_.dim, c_.q_lora_rank);
    norm(p, "attn.q_norm.weight", c_.q_lora_rank);
    linear(p, "attn.wq_b", c_.q_lora_rank, c_.heads * hd);
    linear(p, "attn.wkv", c_.dim, hd);
    norm(p, "attn.kv_norm.weight", hd);
    linear(p, "attn.wo_a", c_.heads * hd / c_.o_groups, c_.o_groups * c_.o_lora_rank);
    linear(p, "attn.wo_b", c_.o_groups * c_.o_lora_rank, c_.dim);
    tensor(p, "attn.attn_sink", DType::F32, {c_.heads}, Fill::f32);
    if (ratio == 0) return;
    compressor(p, "attn.compressor", ratio, (ratio == 4 ? 2 : 1) * hd, hd);
    if (ratio != 4) return;
    linear(p, "attn.indexer.wq_b", c_.q_lora_rank, kIndexerHeads * kIndexerHeadDim);
    linear(p, "attn.indexer.weights_proj", c_.dim, kIndexerHeads);
    compressor(p, "attn.indexer.compressor", 4, 2 * kIndexerHeadDim, kIndexerHeadDim);
  }

  void moe(const std::string& p, bool hash_routed, std::uint64_t experts) {
    if (o_.quant_gate_embed) {
      linear(p, "ffn.gate", c_.dim, experts);
    } else {
      tensor(p, "ffn.gate.weight", DType::BF16, {experts, c_.dim}, Fill::bf16);
    }
    if (hash_routed) {
      tensor(p, "ffn.gate.tid2eid", DType::I64, {c_.vocab, kTopK}, Fill::tid2eid);
    } else {
      tensor(p, "ffn.gate.bias", DType::F32, {experts}, Fill::f32);
    }
    const auto mlp = [&](const std::string& path) {
      linear(p, path + ".w1", c_.dim, c_.moe_inter_dim);
      linear(p, path + ".w2", c_.moe_inter_dim, c_.dim);
      linear(p, path + ".w3", c_.dim, c_.moe_inter_dim);
    };
    for (std::uint64_t e = 0; e < experts; ++e) mlp("ffn.experts." + std::to_string(e));
    mlp("ffn.shared_experts");
  }

  void block(const std::string& p, unsigned ratio, bool hash_routed, std::uint64_t experts) {
    norm(p, "attn_norm.weight", c_.dim);
    norm(p, "ffn_norm.weight", c_.dim);
    hyper_connections(p, "attn");
    hyper_connections(p, "ffn");
    attention(p, ratio);
    moe(p, hash_routed, experts);
  }

  void head_hyper_connections(const std::string& p) {
    tensor(p, "hc_head_fn", DType::F32, {kHcMult, kHcMult * c_.dim}, Fill::f32);
    tensor(p, "hc_head_base", DType::F32, {kHcMult}, Fill::f32);
    tensor(p, "hc_head_scale", DType::F32, {1}, Fill::f32);
  }

  void mtp_extras(const std::string& p) {
    linear(p, "e_proj", c_.dim, c_.dim);
    linear(p, "h_proj", c_.dim, c_.dim);
    norm(p, "enorm.weight", c_.dim);
    norm(p, "hnorm.weight", c_.dim);
    norm(p, "norm.weight", c_.dim);
    head_hyper_connections(p);
    if (!c_.mtp_embed_head) return;
    // Absent from the real release; the reference skips `mtp.*` names containing `emb` or ending
    // in `head.weight`. The HF style uses V3's MTP names (embed_tokens, shared_head.head).
    const bool hf = o_.style == Style::hf;
    out_.push_back({hf ? "model." + p + "embed_tokens.weight" : p + "embed.weight",
                    p + "embed.weight",
                    DType::BF16,
                    {c_.vocab, c_.dim},
                    Fill::bf16});
    out_.push_back({hf ? "model." + p + "shared_head.head.weight" : p + "head.weight",
                    p + "head.weight",
                    DType::BF16,
                    {c_.vocab, c_.dim},
                    Fill::bf16});
  }

  void top_level() {
    if (o_.quant_gate_embed) {
      linear("", "embed", c_.dim, c_.vocab);  // an embedding [V, D] packed as a linear in=D, out=V
    } else {
      tensor("", "embed.weight", DType::BF16, {c_.vocab, c_.dim}, Fill::bf16);
    }
    tensor("", "head.weight", DType::BF16, {c_.vocab, c_.dim}, Fill::bf16);
    norm("", "norm.weight", c_.dim);
    head_hyper_connections("");
    if (c_.markov_head) tensor("", "markov_head.markov_w1.weight", DType::BF16, {c_.dim, c_.dim}, Fill::bf16);
  }

  const ModelConfig& c_;
  const InventoryOptions& o_;
  std::vector<TensorSpec> out_;
};

inline std::vector<TensorSpec> build_inventory(const ModelConfig& config, const InventoryOptions& options) {
  return InventoryBuilder(config, options).build();
}

}  // namespace gen
