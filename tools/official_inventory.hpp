#pragma once
// The tensor inventories of DeepSeek's checkpoints in their official (released) formats, small but
// shape-faithful, for differential tests against DeepSeek's own converters:
//   v3   HF names (model.layers.L.self_attn.q_a_proj.weight), FP8 E4M3 weights with F32
//        weight_scale_inv [ceil(out/128), ceil(in/128)], dense then MoE layers, model.layers.61 as
//        the MTP layer (which convert.py skips);
//   v3.2 v3 plus each layer's indexer (wq_b, wk, k_norm, weights_proj);
//   v4   the release's inference names: FP8 E4M3 + F8_E8M0 .scale [out/128, in/128], routed experts
//        FP4 as I8 [out, in/2] + F8_E8M0 .scale [out, in/32], BF16 and F32 tensors, hash layers
//        with tid2eid, mtp.0 with its emb/head copies.
// Dimensions keep every split of the official converters legal at mp 1, 2, 4 and 8, for weights
// and for their scales (a sharded scale's own dimension must divide too); v3 also has dimensions
// that are not multiples of 128 (partial scale blocks). Model knowledge lives in tools/, never src/.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <shardwise/safetensors/dtype.hpp>

namespace gen::official {

using shardwise::st::DType;
using shardwise::st::Shape;

// What a tensor's data looks like (official_data.hpp fills accordingly).
enum class Fill {
  e4m3,         // FP8 weight: every code, NaN and -0 included
  scale_inv,    // F32 block scale (v3): positive normals, a few NaN, inf, 0, subnormal, negative
  e8m0_blocks,  // F8_E8M0 block scale (v4 FP8): usual codes, a few 0x00, 0xFF, <= 5, 254
  fp4,          // I8 pairs of E2M1 codes: every code
  e8m0_groups,  // F8_E8M0 1 x 32 scales of FP4 (v4): per 128 x 128 block usual, tiny, NaN or wide
  bf16,
  f32,
  tid2eid,
};

struct Tensor {
  std::string name;
  DType dtype;
  Shape shape;
  Fill fill;
};

enum class Format { v3, v32, v4 };

// Matrix sizes: `small` keeps every tensor tiny (the differential tests); `real` has the released
// models' sizes (V3: DeepSeek-V3's config; V4: DeepSeek-V4-Flash's) for benchmarks, with fewer
// layers and experts by --layers / --experts.
enum class Shapes { small, real };

struct Dims {
  unsigned layers = 3;        // decoder layers (besides the MTP layer)
  std::uint64_t experts = 8;  // routed, per MoE layer
  Shapes shapes = Shapes::small;
  std::uint64_t vocab = 0;  // rows of the embeddings and heads; 0: the shape set's own
};

inline std::uint64_t ceil128(std::uint64_t n) { return (n + 127) / 128; }

class OfficialInventory {
 public:
  OfficialInventory(Format format, Dims dims)
      : format_(format),
        dims_(dims),
        v3_(dims.shapes == Shapes::real ? kV3Real : kV3Small),
        v4_(dims.shapes == Shapes::real ? kV4Real : kV4Small) {
    if (dims.vocab != 0) v3_.vocab = v4_.vocab = dims.vocab;
  }

  std::vector<Tensor> build() {
    if (format_ == Format::v4) {
      v4();
    } else {
      v3();
    }
    return std::move(out_);
  }

 private:
  // v3 small: D = 320 and the LoRA ranks are not multiples of 128; sharded outs (q_b, kv_b, dense
  // and shared gate/up) are 1024 or 2048 and sharded ins (o_proj, down_proj) 1024, so their F32
  // scales have 8 or 16 blocks on the split dimension. v3 real: DeepSeek-V3's config (kv_a's 576
  // rows end in a partial block). Routed experts are never split.
  struct V3Sizes {
    std::uint64_t dim, vocab, heads, nope, rope, v, q_lora, kv_lora, inter, moe_inter, shared_inter,
        index_heads, index_head_dim;
  };
  static constexpr V3Sizes kV3Small = {320, 1000, 16, 64, 64, 64, 192, 160, 1024, 192, 1024, 8, 128};
  static constexpr V3Sizes kV3Real = {7168, 129280, 128, 128, 64, 128, 1536, 512, 18432, 2048, 2048, 64, 128};
  static constexpr unsigned kV3MtpLayer = 61;  // convert.py skips the literal "model.layers.61"

  // v4 small: D = 256, 8 heads of 128, 2 output groups of LoRA 512 (wo_a rows 1024: 128 per rank at
  // mp 8, as its dequantisation needs), MoE inter 256, indexer 8 heads of 128. v4 real:
  // DeepSeek-V4-Flash's config (D 4096, 64 heads of 512, 8 groups of 1024, MoE inter 2048).
  struct V4Sizes {
    std::uint64_t dim, vocab, heads, head_dim, q_lora, groups, o_lora, moe_inter, index_heads, index_head_dim;
  };
  static constexpr V4Sizes kV4Small = {256, 1024, 8, 128, 256, 2, 512, 256, 8, 128};
  static constexpr V4Sizes kV4Real = {4096, 129280, 64, 512, 1024, 8, 1024, 2048, 64, 128};
  static constexpr std::uint64_t kHcMult = 4, kHcRows = 24, kTopK = 6;

  void add(std::string name, DType dtype, Shape shape, Fill fill) {
    out_.push_back({std::move(name), dtype, std::move(shape), fill});
  }

  // An FP8 linear [out, in] with its block scale.
  void fp8_linear(const std::string& path, std::uint64_t out, std::uint64_t in) {
    add(path + ".weight", DType::F8_E4M3, {out, in}, Fill::e4m3);
    if (format_ == Format::v4) {
      add(path + ".scale", DType::F8_E8M0, {ceil128(out), ceil128(in)}, Fill::e8m0_blocks);
    } else {
      add(path + ".weight_scale_inv", DType::F32, {ceil128(out), ceil128(in)}, Fill::scale_inv);
    }
  }

  // ---- v3 / v3.2 ------------------------------------------------------------------------------

  void v3_attention(const std::string& p) {
    fp8_linear(p + "self_attn.q_a_proj", v3_.q_lora, v3_.dim);
    add(p + "self_attn.q_a_layernorm.weight", DType::BF16, {v3_.q_lora}, Fill::bf16);
    fp8_linear(p + "self_attn.q_b_proj", v3_.heads * (v3_.nope + v3_.rope), v3_.q_lora);
    fp8_linear(p + "self_attn.kv_a_proj_with_mqa", v3_.kv_lora + v3_.rope, v3_.dim);
    add(p + "self_attn.kv_a_layernorm.weight", DType::BF16, {v3_.kv_lora}, Fill::bf16);
    fp8_linear(p + "self_attn.kv_b_proj", v3_.heads * (v3_.nope + v3_.v), v3_.kv_lora);
    fp8_linear(p + "self_attn.o_proj", v3_.dim, v3_.heads * v3_.v);
    if (format_ != Format::v32) return;
    // DeepSeek-V3.2's lightning indexer (k_norm is a LayerNorm: weight and bias, float32 assumed).
    fp8_linear(p + "self_attn.indexer.wq_b", v3_.index_heads * v3_.index_head_dim, v3_.q_lora);
    fp8_linear(p + "self_attn.indexer.wk", v3_.index_head_dim, v3_.dim);
    add(p + "self_attn.indexer.k_norm.weight", DType::F32, {v3_.index_head_dim}, Fill::f32);
    add(p + "self_attn.indexer.k_norm.bias", DType::F32, {v3_.index_head_dim}, Fill::f32);
    add(p + "self_attn.indexer.weights_proj.weight", DType::BF16, {v3_.index_heads, v3_.dim}, Fill::bf16);
  }

  void v3_mlp(const std::string& p, std::uint64_t inter) {
    fp8_linear(p + "gate_proj", inter, v3_.dim);
    fp8_linear(p + "up_proj", inter, v3_.dim);
    fp8_linear(p + "down_proj", v3_.dim, inter);
  }

  void v3_layer(unsigned layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    add(p + "input_layernorm.weight", DType::BF16, {v3_.dim}, Fill::bf16);
    add(p + "post_attention_layernorm.weight", DType::BF16, {v3_.dim}, Fill::bf16);
    v3_attention(p);
    if (layer == 0) {  // first_k_dense_replace = 1
      v3_mlp(p + "mlp.", v3_.inter);
      return;
    }
    add(p + "mlp.gate.weight", DType::BF16, {dims_.experts, v3_.dim}, Fill::bf16);
    add(p + "mlp.gate.e_score_correction_bias", DType::F32, {dims_.experts}, Fill::f32);
    for (std::uint64_t e = 0; e < dims_.experts; ++e)
      v3_mlp(p + "mlp.experts." + std::to_string(e) + ".", v3_.moe_inter);
    v3_mlp(p + "mlp.shared_experts.", v3_.shared_inter);
  }

  void v3() {
    if (dims_.layers < 2 || dims_.layers >= kV3MtpLayer) {
      throw std::invalid_argument(
          "v3 layers must be between 2 and 60 (layer 0 dense, then MoE; 61 is the MTP layer)");
    }
    add("model.embed_tokens.weight", DType::BF16, {v3_.vocab, v3_.dim}, Fill::bf16);
    add("model.norm.weight", DType::BF16, {v3_.dim}, Fill::bf16);
    add("lm_head.weight", DType::BF16, {v3_.vocab, v3_.dim}, Fill::bf16);
    for (unsigned l = 0; l < dims_.layers; ++l) v3_layer(l);
    // The MTP module: a full MoE layer plus its own embedding, projections and head.
    v3_layer(kV3MtpLayer);
    const std::string mtp = "model.layers." + std::to_string(kV3MtpLayer) + ".";
    add(mtp + "embed_tokens.weight", DType::BF16, {v3_.vocab, v3_.dim}, Fill::bf16);
    add(mtp + "enorm.weight", DType::BF16, {v3_.dim}, Fill::bf16);
    add(mtp + "hnorm.weight", DType::BF16, {v3_.dim}, Fill::bf16);
    fp8_linear(mtp + "eh_proj", v3_.dim, 2 * v3_.dim);
    add(mtp + "shared_head.norm.weight", DType::BF16, {v3_.dim}, Fill::bf16);
    add(mtp + "shared_head.head.weight", DType::BF16, {v3_.vocab, v3_.dim}, Fill::bf16);
  }

  // ---- v4 --------------------------------------------------------------------------------------

  static unsigned v4_ratio(unsigned layer) { return layer == 0 ? 0 : (layer % 2 == 1 ? 4 : 128); }

  void hyper_connections(const std::string& p, const std::string& which) {
    add(p + "hc_" + which + "_fn", DType::F32, {kHcRows, kHcMult * v4_.dim}, Fill::f32);
    add(p + "hc_" + which + "_base", DType::F32, {kHcRows}, Fill::f32);
    add(p + "hc_" + which + "_scale", DType::F32, {3}, Fill::f32);
  }

  void head_hyper_connections(const std::string& p) {
    add(p + "hc_head_fn", DType::F32, {kHcMult, kHcMult * v4_.dim}, Fill::f32);
    add(p + "hc_head_base", DType::F32, {kHcMult}, Fill::f32);
    add(p + "hc_head_scale", DType::F32, {1}, Fill::f32);
  }

  void compressor(const std::string& path, unsigned ratio, std::uint64_t width, std::uint64_t norm_dim) {
    add(path + ".wkv.weight", DType::BF16, {width, v4_.dim}, Fill::bf16);
    add(path + ".wgate.weight", DType::BF16, {width, v4_.dim}, Fill::bf16);
    add(path + ".ape", DType::F32, {ratio, width}, Fill::f32);
    add(path + ".norm.weight", DType::BF16, {norm_dim}, Fill::bf16);
  }

  void v4_attention(const std::string& p, unsigned ratio) {
    fp8_linear(p + "attn.wq_a", v4_.q_lora, v4_.dim);
    add(p + "attn.q_norm.weight", DType::BF16, {v4_.q_lora}, Fill::bf16);
    fp8_linear(p + "attn.wq_b", v4_.heads * v4_.head_dim, v4_.q_lora);
    fp8_linear(p + "attn.wkv", v4_.head_dim, v4_.dim);
    add(p + "attn.kv_norm.weight", DType::BF16, {v4_.head_dim}, Fill::bf16);
    fp8_linear(p + "attn.wo_a", v4_.groups * v4_.o_lora, v4_.heads * v4_.head_dim / v4_.groups);
    fp8_linear(p + "attn.wo_b", v4_.dim, v4_.groups * v4_.o_lora);
    add(p + "attn.attn_sink", DType::F32, {v4_.heads}, Fill::f32);
    if (ratio == 0) return;
    compressor(p + "attn.compressor", ratio, (ratio == 4 ? 2 : 1) * v4_.head_dim, v4_.head_dim);
    if (ratio != 4) return;
    fp8_linear(p + "attn.indexer.wq_b", v4_.index_heads * v4_.index_head_dim, v4_.q_lora);
    add(p + "attn.indexer.weights_proj.weight", DType::BF16, {v4_.index_heads, v4_.dim}, Fill::bf16);
    compressor(p + "attn.indexer.compressor", 4, 2 * v4_.index_head_dim, v4_.index_head_dim);
  }

  void fp4_linear(const std::string& path, std::uint64_t out, std::uint64_t in) {
    add(path + ".weight", DType::I8, {out, in / 2}, Fill::fp4);
    add(path + ".scale", DType::F8_E8M0, {out, in / 32}, Fill::e8m0_groups);
  }

  void v4_block(const std::string& p, unsigned ratio, bool hash_routed) {
    add(p + "attn_norm.weight", DType::BF16, {v4_.dim}, Fill::bf16);
    add(p + "ffn_norm.weight", DType::BF16, {v4_.dim}, Fill::bf16);
    hyper_connections(p, "attn");
    hyper_connections(p, "ffn");
    v4_attention(p, ratio);
    add(p + "ffn.gate.weight", DType::BF16, {dims_.experts, v4_.dim}, Fill::bf16);
    if (hash_routed) {
      add(p + "ffn.gate.tid2eid", DType::I64, {v4_.vocab, kTopK}, Fill::tid2eid);
    } else {
      add(p + "ffn.gate.bias", DType::F32, {dims_.experts}, Fill::f32);
    }
    for (std::uint64_t e = 0; e < dims_.experts; ++e) {
      const std::string expert = p + "ffn.experts." + std::to_string(e);
      fp4_linear(expert + ".w1", v4_.moe_inter, v4_.dim);
      fp4_linear(expert + ".w2", v4_.dim, v4_.moe_inter);
      fp4_linear(expert + ".w3", v4_.moe_inter, v4_.dim);
    }
    fp8_linear(p + "ffn.shared_experts.w1", v4_.moe_inter, v4_.dim);
    fp8_linear(p + "ffn.shared_experts.w2", v4_.dim, v4_.moe_inter);
    fp8_linear(p + "ffn.shared_experts.w3", v4_.moe_inter, v4_.dim);
  }

  void v4() {
    if (dims_.layers < 1) throw std::invalid_argument("v4 needs at least 1 layer");
    add("embed.weight", DType::BF16, {v4_.vocab, v4_.dim}, Fill::bf16);
    add("head.weight", DType::BF16, {v4_.vocab, v4_.dim}, Fill::bf16);
    add("norm.weight", DType::BF16, {v4_.dim}, Fill::bf16);
    head_hyper_connections("");
    for (unsigned l = 0; l < dims_.layers; ++l)
      v4_block("layers." + std::to_string(l) + ".", v4_ratio(l), l == 0);
    v4_block("mtp.0.", 0, false);
    fp8_linear("mtp.0.e_proj", v4_.dim, v4_.dim);
    fp8_linear("mtp.0.h_proj", v4_.dim, v4_.dim);
    add("mtp.0.enorm.weight", DType::BF16, {v4_.dim}, Fill::bf16);
    add("mtp.0.hnorm.weight", DType::BF16, {v4_.dim}, Fill::bf16);
    add("mtp.0.norm.weight", DType::BF16, {v4_.dim}, Fill::bf16);
    head_hyper_connections("mtp.0.");
    // Copies of the main embedding and head, which convert.py drops (the loader shares them).
    add("mtp.0.emb.tok_emb.weight", DType::BF16, {v4_.vocab, v4_.dim}, Fill::bf16);
    add("mtp.0.head.weight", DType::BF16, {v4_.vocab, v4_.dim}, Fill::bf16);
  }

  Format format_;
  Dims dims_;
  V3Sizes v3_;
  V4Sizes v4_;
  std::vector<Tensor> out_;
};

inline std::vector<Tensor> build_official_inventory(Format format, Dims dims) {
  return OfficialInventory(format, dims).build();
}

}  // namespace gen::official
