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

struct Dims {
  unsigned layers = 3;        // decoder layers (besides the MTP layer)
  std::uint64_t experts = 8;  // routed, per MoE layer
};

inline std::uint64_t ceil128(std::uint64_t n) { return (n + 127) / 128; }

class OfficialInventory {
 public:
  OfficialInventory(Format format, Dims dims) : format_(format), dims_(dims) {}

  std::vector<Tensor> build() {
    if (format_ == Format::v4) {
      v4();
    } else {
      v3();
    }
    return std::move(out_);
  }

 private:
  // v3 dimensions: D = 320 and the LoRA ranks are not multiples of 128; sharded outs (q_b, kv_b,
  // dense and shared gate/up) are 1024 or 2048 and sharded ins (o_proj, down_proj) 1024, so their
  // F32 scales have 8 or 16 blocks on the split dimension. Routed experts are never split.
  static constexpr std::uint64_t kV3Dim = 320, kV3Vocab = 1000, kV3Heads = 16, kV3Nope = 64, kV3Rope = 64,
                                 kV3V = 64, kV3QLora = 192, kV3KvLora = 160, kV3Inter = 1024,
                                 kV3MoeInter = 192, kV3SharedInter = 1024, kV3IndexHeads = 8,
                                 kV3IndexHeadDim = 128;
  static constexpr unsigned kV3MtpLayer = 61;  // convert.py skips the literal "model.layers.61"

  // v4 dimensions: D = 256, 8 heads of 128, 2 output groups of LoRA 512 (wo_a rows 1024: 128 per
  // rank at mp 8, as its dequantisation needs), MoE inter 256, indexer 8 heads of 128.
  static constexpr std::uint64_t kV4Dim = 256, kV4Vocab = 1024, kV4Heads = 8, kV4HeadDim = 128,
                                 kV4QLora = 256, kV4Groups = 2, kV4OLora = 512, kV4MoeInter = 256,
                                 kV4IndexHeads = 8, kV4IndexHeadDim = 128, kHcMult = 4, kHcRows = 24,
                                 kTopK = 6;

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
    fp8_linear(p + "self_attn.q_a_proj", kV3QLora, kV3Dim);
    add(p + "self_attn.q_a_layernorm.weight", DType::BF16, {kV3QLora}, Fill::bf16);
    fp8_linear(p + "self_attn.q_b_proj", kV3Heads * (kV3Nope + kV3Rope), kV3QLora);
    fp8_linear(p + "self_attn.kv_a_proj_with_mqa", kV3KvLora + kV3Rope, kV3Dim);
    add(p + "self_attn.kv_a_layernorm.weight", DType::BF16, {kV3KvLora}, Fill::bf16);
    fp8_linear(p + "self_attn.kv_b_proj", kV3Heads * (kV3Nope + kV3V), kV3KvLora);
    fp8_linear(p + "self_attn.o_proj", kV3Dim, kV3Heads * kV3V);
    if (format_ != Format::v32) return;
    // DeepSeek-V3.2's lightning indexer (k_norm is a LayerNorm: weight and bias, float32 assumed).
    fp8_linear(p + "self_attn.indexer.wq_b", kV3IndexHeads * kV3IndexHeadDim, kV3QLora);
    fp8_linear(p + "self_attn.indexer.wk", kV3IndexHeadDim, kV3Dim);
    add(p + "self_attn.indexer.k_norm.weight", DType::F32, {kV3IndexHeadDim}, Fill::f32);
    add(p + "self_attn.indexer.k_norm.bias", DType::F32, {kV3IndexHeadDim}, Fill::f32);
    add(p + "self_attn.indexer.weights_proj.weight", DType::BF16, {kV3IndexHeads, kV3Dim}, Fill::bf16);
  }

  void v3_mlp(const std::string& p, std::uint64_t inter) {
    fp8_linear(p + "gate_proj", inter, kV3Dim);
    fp8_linear(p + "up_proj", inter, kV3Dim);
    fp8_linear(p + "down_proj", kV3Dim, inter);
  }

  void v3_layer(unsigned layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    add(p + "input_layernorm.weight", DType::BF16, {kV3Dim}, Fill::bf16);
    add(p + "post_attention_layernorm.weight", DType::BF16, {kV3Dim}, Fill::bf16);
    v3_attention(p);
    if (layer == 0) {  // first_k_dense_replace = 1
      v3_mlp(p + "mlp.", kV3Inter);
      return;
    }
    add(p + "mlp.gate.weight", DType::BF16, {dims_.experts, kV3Dim}, Fill::bf16);
    add(p + "mlp.gate.e_score_correction_bias", DType::F32, {dims_.experts}, Fill::f32);
    for (std::uint64_t e = 0; e < dims_.experts; ++e)
      v3_mlp(p + "mlp.experts." + std::to_string(e) + ".", kV3MoeInter);
    v3_mlp(p + "mlp.shared_experts.", kV3SharedInter);
  }

  void v3() {
    if (dims_.layers < 2 || dims_.layers >= kV3MtpLayer) {
      throw std::invalid_argument(
          "v3 layers must be between 2 and 60 (layer 0 dense, then MoE; 61 is the MTP layer)");
    }
    add("model.embed_tokens.weight", DType::BF16, {kV3Vocab, kV3Dim}, Fill::bf16);
    add("model.norm.weight", DType::BF16, {kV3Dim}, Fill::bf16);
    add("lm_head.weight", DType::BF16, {kV3Vocab, kV3Dim}, Fill::bf16);
    for (unsigned l = 0; l < dims_.layers; ++l) v3_layer(l);
    // The MTP module: a full MoE layer plus its own embedding, projections and head.
    v3_layer(kV3MtpLayer);
    const std::string mtp = "model.layers." + std::to_string(kV3MtpLayer) + ".";
    add(mtp + "embed_tokens.weight", DType::BF16, {kV3Vocab, kV3Dim}, Fill::bf16);
    add(mtp + "enorm.weight", DType::BF16, {kV3Dim}, Fill::bf16);
    add(mtp + "hnorm.weight", DType::BF16, {kV3Dim}, Fill::bf16);
    fp8_linear(mtp + "eh_proj", kV3Dim, 2 * kV3Dim);
    add(mtp + "shared_head.norm.weight", DType::BF16, {kV3Dim}, Fill::bf16);
    add(mtp + "shared_head.head.weight", DType::BF16, {kV3Vocab, kV3Dim}, Fill::bf16);
  }

  // ---- v4 --------------------------------------------------------------------------------------

  static unsigned v4_ratio(unsigned layer) { return layer == 0 ? 0 : (layer % 2 == 1 ? 4 : 128); }

  void hyper_connections(const std::string& p, const std::string& which) {
    add(p + "hc_" + which + "_fn", DType::F32, {kHcRows, kHcMult * kV4Dim}, Fill::f32);
    add(p + "hc_" + which + "_base", DType::F32, {kHcRows}, Fill::f32);
    add(p + "hc_" + which + "_scale", DType::F32, {3}, Fill::f32);
  }

  void head_hyper_connections(const std::string& p) {
    add(p + "hc_head_fn", DType::F32, {kHcMult, kHcMult * kV4Dim}, Fill::f32);
    add(p + "hc_head_base", DType::F32, {kHcMult}, Fill::f32);
    add(p + "hc_head_scale", DType::F32, {1}, Fill::f32);
  }

  void compressor(const std::string& path, unsigned ratio, std::uint64_t width, std::uint64_t norm_dim) {
    add(path + ".wkv.weight", DType::BF16, {width, kV4Dim}, Fill::bf16);
    add(path + ".wgate.weight", DType::BF16, {width, kV4Dim}, Fill::bf16);
    add(path + ".ape", DType::F32, {ratio, width}, Fill::f32);
    add(path + ".norm.weight", DType::BF16, {norm_dim}, Fill::bf16);
  }

  void v4_attention(const std::string& p, unsigned ratio) {
    fp8_linear(p + "attn.wq_a", kV4QLora, kV4Dim);
    add(p + "attn.q_norm.weight", DType::BF16, {kV4QLora}, Fill::bf16);
    fp8_linear(p + "attn.wq_b", kV4Heads * kV4HeadDim, kV4QLora);
    fp8_linear(p + "attn.wkv", kV4HeadDim, kV4Dim);
    add(p + "attn.kv_norm.weight", DType::BF16, {kV4HeadDim}, Fill::bf16);
    fp8_linear(p + "attn.wo_a", kV4Groups * kV4OLora, kV4Heads * kV4HeadDim / kV4Groups);
    fp8_linear(p + "attn.wo_b", kV4Dim, kV4Groups * kV4OLora);
    add(p + "attn.attn_sink", DType::F32, {kV4Heads}, Fill::f32);
    if (ratio == 0) return;
    compressor(p + "attn.compressor", ratio, (ratio == 4 ? 2 : 1) * kV4HeadDim, kV4HeadDim);
    if (ratio != 4) return;
    fp8_linear(p + "attn.indexer.wq_b", kV4IndexHeads * kV4IndexHeadDim, kV4QLora);
    add(p + "attn.indexer.weights_proj.weight", DType::BF16, {kV4IndexHeads, kV4Dim}, Fill::bf16);
    compressor(p + "attn.indexer.compressor", 4, 2 * kV4IndexHeadDim, kV4IndexHeadDim);
  }

  void fp4_linear(const std::string& path, std::uint64_t out, std::uint64_t in) {
    add(path + ".weight", DType::I8, {out, in / 2}, Fill::fp4);
    add(path + ".scale", DType::F8_E8M0, {out, in / 32}, Fill::e8m0_groups);
  }

  void v4_block(const std::string& p, unsigned ratio, bool hash_routed) {
    add(p + "attn_norm.weight", DType::BF16, {kV4Dim}, Fill::bf16);
    add(p + "ffn_norm.weight", DType::BF16, {kV4Dim}, Fill::bf16);
    hyper_connections(p, "attn");
    hyper_connections(p, "ffn");
    v4_attention(p, ratio);
    add(p + "ffn.gate.weight", DType::BF16, {dims_.experts, kV4Dim}, Fill::bf16);
    if (hash_routed) {
      add(p + "ffn.gate.tid2eid", DType::I64, {kV4Vocab, kTopK}, Fill::tid2eid);
    } else {
      add(p + "ffn.gate.bias", DType::F32, {dims_.experts}, Fill::f32);
    }
    for (std::uint64_t e = 0; e < dims_.experts; ++e) {
      const std::string expert = p + "ffn.experts." + std::to_string(e);
      fp4_linear(expert + ".w1", kV4MoeInter, kV4Dim);
      fp4_linear(expert + ".w2", kV4Dim, kV4MoeInter);
      fp4_linear(expert + ".w3", kV4MoeInter, kV4Dim);
    }
    fp8_linear(p + "ffn.shared_experts.w1", kV4MoeInter, kV4Dim);
    fp8_linear(p + "ffn.shared_experts.w2", kV4Dim, kV4MoeInter);
    fp8_linear(p + "ffn.shared_experts.w3", kV4MoeInter, kV4Dim);
  }

  void v4() {
    if (dims_.layers < 1) throw std::invalid_argument("v4 needs at least 1 layer");
    add("embed.weight", DType::BF16, {kV4Vocab, kV4Dim}, Fill::bf16);
    add("head.weight", DType::BF16, {kV4Vocab, kV4Dim}, Fill::bf16);
    add("norm.weight", DType::BF16, {kV4Dim}, Fill::bf16);
    head_hyper_connections("");
    for (unsigned l = 0; l < dims_.layers; ++l)
      v4_block("layers." + std::to_string(l) + ".", v4_ratio(l), l == 0);
    v4_block("mtp.0.", 0, false);
    fp8_linear("mtp.0.e_proj", kV4Dim, kV4Dim);
    fp8_linear("mtp.0.h_proj", kV4Dim, kV4Dim);
    add("mtp.0.enorm.weight", DType::BF16, {kV4Dim}, Fill::bf16);
    add("mtp.0.hnorm.weight", DType::BF16, {kV4Dim}, Fill::bf16);
    add("mtp.0.norm.weight", DType::BF16, {kV4Dim}, Fill::bf16);
    head_hyper_connections("mtp.0.");
    // Copies of the main embedding and head, which convert.py drops (the loader shares them).
    add("mtp.0.emb.tok_emb.weight", DType::BF16, {kV4Vocab, kV4Dim}, Fill::bf16);
    add("mtp.0.head.weight", DType::BF16, {kV4Vocab, kV4Dim}, Fill::bf16);
  }

  Format format_;
  Dims dims_;
  std::vector<Tensor> out_;
};

inline std::vector<Tensor> build_official_inventory(Format format, Dims dims) {
  return OfficialInventory(format, dims).build();
}

}  // namespace gen::official
