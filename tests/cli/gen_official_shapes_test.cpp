// gen_official_checkpoint --shapes real: the released models' matrix sizes, as DeepSeek's configs
// give them (../shared/reference/DEEPSEEK_OFFICIAL.md, section 6, for V4-Flash; DeepSeek-V3's
// config.json for V3), written out here number by number. The inventory is checked directly (a
// real-shaped checkpoint is hundreds of MB); --vocab and its refusal through the command line.

#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "../../tools/official_inventory.hpp"
#include "support/support.hpp"

using namespace shardwise;
namespace official = gen::official;

namespace {

std::map<std::string, official::Tensor> by_name(official::Format format, official::Dims dims) {
  std::map<std::string, official::Tensor> tensors;
  for (official::Tensor& t : official::build_official_inventory(format, dims)) tensors.emplace(t.name, t);
  return tensors;
}

struct Expected {
  const char* name;
  st::DType dtype;
  st::Shape shape;
};

void check_all(const std::map<std::string, official::Tensor>& tensors,
               const std::vector<Expected>& expected) {
  for (const Expected& e : expected) {
    CAPTURE(e.name);
    const auto found = tensors.find(e.name);
    REQUIRE(found != tensors.end());
    CHECK(found->second.dtype == e.dtype);
    CHECK(found->second.shape == e.shape);
  }
}

}  // namespace

TEST_CASE("gen_official_checkpoint --shapes real v4: DeepSeek-V4-Flash's matrices") {
  using st::DType;
  const auto tensors = by_name(official::Format::v4, {2, 4, official::Shapes::real, 0});
  check_all(tensors, {
                         {"embed.weight", DType::BF16, {129280, 4096}},
                         {"layers.0.ffn.gate.tid2eid", DType::I64, {129280, 6}},
                         {"layers.0.attn.wq_a.weight", DType::F8_E4M3, {1024, 4096}},
                         {"layers.0.attn.wq_a.scale", DType::F8_E8M0, {8, 32}},
                         {"layers.0.attn.wq_b.weight", DType::F8_E4M3, {32768, 1024}},
                         {"layers.0.attn.wq_b.scale", DType::F8_E8M0, {256, 8}},
                         {"layers.0.attn.wkv.weight", DType::F8_E4M3, {512, 4096}},
                         {"layers.0.attn.wkv.scale", DType::F8_E8M0, {4, 32}},
                         {"layers.0.attn.wo_a.weight", DType::F8_E4M3, {8192, 4096}},
                         {"layers.0.attn.wo_a.scale", DType::F8_E8M0, {64, 32}},
                         {"layers.0.attn.wo_b.weight", DType::F8_E4M3, {4096, 8192}},
                         {"layers.0.attn.wo_b.scale", DType::F8_E8M0, {32, 64}},
                         {"layers.0.attn.attn_sink", DType::F32, {64}},
                         {"layers.0.hc_attn_fn", DType::F32, {24, 16384}},
                         {"layers.0.ffn.gate.weight", DType::BF16, {4, 4096}},
                         {"layers.0.ffn.experts.3.w1.weight", DType::I8, {2048, 2048}},
                         {"layers.0.ffn.experts.3.w1.scale", DType::F8_E8M0, {2048, 128}},
                         {"layers.0.ffn.experts.3.w2.weight", DType::I8, {4096, 1024}},
                         {"layers.0.ffn.experts.3.w2.scale", DType::F8_E8M0, {4096, 64}},
                         {"layers.0.ffn.shared_experts.w1.weight", DType::F8_E4M3, {2048, 4096}},
                         {"layers.0.ffn.shared_experts.w1.scale", DType::F8_E8M0, {16, 32}},
                         {"layers.1.attn.compressor.ape", DType::F32, {4, 1024}},
                         {"layers.1.attn.compressor.wkv.weight", DType::BF16, {1024, 4096}},
                         {"layers.1.attn.indexer.wq_b.weight", DType::F8_E4M3, {8192, 1024}},
                         {"layers.1.attn.indexer.wq_b.scale", DType::F8_E8M0, {64, 8}},
                         {"layers.1.attn.indexer.weights_proj.weight", DType::BF16, {64, 4096}},
                         {"layers.1.attn.indexer.compressor.ape", DType::F32, {4, 256}},
                         {"layers.1.attn.indexer.compressor.wkv.weight", DType::BF16, {256, 4096}},
                         {"layers.1.attn.indexer.compressor.norm.weight", DType::BF16, {128}},
                         {"hc_head_fn", DType::F32, {4, 16384}},
                         {"mtp.0.e_proj.weight", DType::F8_E4M3, {4096, 4096}},
                         {"mtp.0.e_proj.scale", DType::F8_E8M0, {32, 32}},
                     });
  // --vocab replaces the rows of the embeddings, heads and tid2eid only.
  const auto cut = by_name(official::Format::v4, {1, 1, official::Shapes::real, 1024});
  check_all(cut, {{"embed.weight", DType::BF16, {1024, 4096}},
                  {"head.weight", DType::BF16, {1024, 4096}},
                  {"layers.0.ffn.gate.tid2eid", DType::I64, {1024, 6}},
                  {"layers.0.attn.wo_a.weight", DType::F8_E4M3, {8192, 4096}}});
}

TEST_CASE("gen_official_checkpoint --shapes real v3: DeepSeek-V3's matrices") {
  using st::DType;
  const auto tensors = by_name(official::Format::v32, {2, 2, official::Shapes::real, 0});
  check_all(tensors,
            {
                {"model.embed_tokens.weight", DType::BF16, {129280, 7168}},
                {"lm_head.weight", DType::BF16, {129280, 7168}},
                {"model.layers.0.self_attn.q_a_proj.weight", DType::F8_E4M3, {1536, 7168}},
                {"model.layers.0.self_attn.q_a_proj.weight_scale_inv", DType::F32, {12, 56}},
                {"model.layers.0.self_attn.q_b_proj.weight", DType::F8_E4M3, {24576, 1536}},
                {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", DType::F8_E4M3, {576, 7168}},
                {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv", DType::F32, {5, 56}},
                {"model.layers.0.self_attn.kv_b_proj.weight", DType::F8_E4M3, {32768, 512}},
                {"model.layers.0.self_attn.o_proj.weight", DType::F8_E4M3, {7168, 16384}},
                {"model.layers.0.self_attn.o_proj.weight_scale_inv", DType::F32, {56, 128}},
                {"model.layers.0.mlp.gate_proj.weight", DType::F8_E4M3, {18432, 7168}},
                {"model.layers.0.mlp.down_proj.weight_scale_inv", DType::F32, {56, 144}},
                {"model.layers.1.mlp.experts.1.up_proj.weight", DType::F8_E4M3, {2048, 7168}},
                {"model.layers.1.mlp.shared_experts.down_proj.weight", DType::F8_E4M3, {7168, 2048}},
                {"model.layers.1.mlp.gate.weight", DType::BF16, {2, 7168}},
                {"model.layers.1.self_attn.indexer.wq_b.weight", DType::F8_E4M3, {8192, 1536}},
                {"model.layers.1.self_attn.indexer.wk.weight", DType::F8_E4M3, {128, 7168}},
                {"model.layers.1.self_attn.indexer.weights_proj.weight", DType::BF16, {64, 7168}},
                {"model.layers.61.eh_proj.weight", DType::F8_E4M3, {7168, 14336}},
                {"model.layers.61.shared_head.head.weight", DType::BF16, {129280, 7168}},
            });
}

TEST_CASE("gen_official_checkpoint --vocab must be a multiple of 8, --shapes small or real") {
  test::TempDir dir;
  const auto odd = test::run_command(
      {test::tools_dir() + "/gen_official_checkpoint", "--out", dir.str(), "--vocab", "1001"});
  CHECK(odd.exit_code == 2);
  CHECK(odd.err.find("--vocab 1001 is not a multiple of 8") != std::string::npos);
  const auto shapes = test::run_command(
      {test::tools_dir() + "/gen_official_checkpoint", "--out", dir.str(), "--shapes", "huge"});
  CHECK(shapes.exit_code != 0);
}
