// The official-format checkpoint generator (tools/gen_official_checkpoint): readable safetensors
// with the tensor counts, dtypes and shapes of DeepSeek's V3, V3.2 and V4 releases (counts from
// formulas written here, independently of the generator's inventory), every block scale shaped
// for its weight, splits legal at mp 8, and the special codes the transforms must meet present.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/safetensors/checkpoint.hpp>

#include "support/support.hpp"

namespace fs = std::filesystem;
using namespace shardwise;
using shardwise::test::run_command;
using shardwise::test::TempDir;

namespace {

// V3: 3 top-level tensors; per layer 2 norms and attention (5 FP8 linears x 2 + 2 norms), plus the
// V3.2 indexer (2 FP8 linears, k_norm weight and bias, weights_proj); layer 0 a dense MLP (3 x 2),
// the others and layer 61 the gate (weight, bias) and 1 + E MLPs; layer 61 also 7 MTP extras.
std::size_t v3_tensors(unsigned layers, std::size_t experts, bool v32) {
  const std::size_t common = 2 + 12 + (v32 ? 7 : 0);
  const std::size_t moe = common + 2 + 6 * (experts + 1);
  return 3 + (common + 6) + (layers - 1) * moe + moe + 7;
}

// V4: 6 top-level; per block 2 norms, 6 hc, attention (5 FP8 linears x 2, 2 norms, attn_sink), the gate
// (weight, bias or tid2eid), E routed and 1 shared MLP (x 6); a compressor (4) when the ratio is
// not 0 and the indexer (wq_b x 2, weights_proj, compressor 4) when it is 4. Layer ratios 0, 4, 128;
// mtp.0 is a ratio-0 block plus e_proj, h_proj (x 2), 3 norms, 3 hc_head and 2 copies.
std::size_t v4_tensors(std::size_t experts) {
  const std::size_t block = 2 + 6 + 13 + 2 + 6 * (experts + 1);
  return 6 + block + (block + 4 + 7) + (block + 4) + (block + 12);
}

test::CommandResult generate(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), {test::tools_dir() + "/gen_official_checkpoint", "--out", dir.str()});
  return run_command(args);
}

const st::TensorInfo& find(const st::Checkpoint& ckpt, const std::string& name) {
  for (const auto& ref : ckpt.tensors()) {
    if (ref.info->name == name) return *ref.info;
  }
  FAIL("no tensor " << name);
  throw std::logic_error("unreachable");
}

std::span<const std::byte> data_of(const st::Checkpoint& ckpt, const std::string& name) {
  for (const auto& ref : ckpt.tensors()) {
    if (ref.info->name == name) return ckpt.files()[ref.file].data(*ref.info);
  }
  FAIL("no tensor " << name);
  throw std::logic_error("unreachable");
}

std::uint64_t ceil128(std::uint64_t n) { return (n + 127) / 128; }

bool ends_with(std::string_view s, std::string_view suffix) { return s.ends_with(suffix); }

// Every FP8 weight has its block scale [ceil(out/128), ceil(in/128)] (named `scale_suffix`), every
// I8 (FP4) weight its scale [out, in/32]; returns the number of weights checked.
std::size_t check_scale_shapes(const st::Checkpoint& ckpt, const std::string& scale_suffix) {
  std::size_t checked = 0;
  for (const auto& ref : ckpt.tensors()) {
    const st::TensorInfo& w = *ref.info;
    if (w.dtype != st::DType::F8_E4M3 && w.dtype != st::DType::I8) continue;
    REQUIRE(ends_with(w.name, ".weight"));
    const std::string base(w.name.substr(0, w.name.size() - 7));
    const st::TensorInfo& s = find(ckpt, w.dtype == st::DType::I8 ? base + ".scale" : base + scale_suffix);
    INFO(w.name);
    if (w.dtype == st::DType::I8) {
      CHECK(s.dtype == st::DType::F8_E8M0);
      CHECK(s.shape == st::Shape{w.shape[0], w.shape[1] * 2 / 32});
      CHECK(w.shape[0] % 128 == 0);
      CHECK(w.shape[1] * 2 % 128 == 0);
    } else {
      CHECK(s.shape == st::Shape{ceil128(w.shape[0]), ceil128(w.shape[1])});
    }
    ++checked;
  }
  return checked;
}

}  // namespace

TEST_CASE("gen_official_checkpoint v3 and v3.2: HF names, FP8 with F32 scale_inv, layer 61 as MTP") {
  for (const std::string format : {"v3", "v3.2"}) {
    SECTION(format) {
      TempDir dir;
      const auto result = generate(dir, {"--format", format, "--files", "3", "--index"});
      INFO(result.err);
      REQUIRE(result.exit_code == 0);
      CHECK(fs::exists(dir / "model.safetensors.index.json"));
      CHECK(fs::exists(dir / "tokenizer.json"));
      CHECK(fs::exists(dir / "model-00003-of-00003.safetensors"));
      const auto ckpt = st::Checkpoint::open(dir.str());  // checks the index against the files
      CHECK(ckpt.tensors().size() == v3_tensors(3, 8, format == "v3.2"));
      CHECK(check_scale_shapes(ckpt, ".weight_scale_inv") > 100);
      const auto& q_a = find(ckpt, "model.layers.0.self_attn.q_a_proj.weight");
      CHECK(q_a.dtype == st::DType::F8_E4M3);
      CHECK(q_a.shape == st::Shape{192, 320});  // neither a multiple of 128: partial blocks
      CHECK(find(ckpt, "model.layers.0.self_attn.q_a_proj.weight_scale_inv").dtype == st::DType::F32);
      CHECK(find(ckpt, "model.layers.2.mlp.gate.e_score_correction_bias").dtype == st::DType::F32);
      CHECK(find(ckpt, "model.layers.61.shared_head.head.weight").shape == st::Shape{1000, 320});
      CHECK(find(ckpt, "model.layers.61.mlp.experts.7.down_proj.weight").dtype == st::DType::F8_E4M3);
      // The splits of convert.py at mp 8 on weight and scale: q_b/kv_b rows, o_proj/down_proj cols.
      for (const std::string name :
           {"model.layers.1.self_attn.q_b_proj", "model.layers.1.self_attn.kv_b_proj",
            "model.layers.0.mlp.gate_proj", "model.layers.1.mlp.shared_experts.up_proj"}) {
        CHECK(find(ckpt, name + ".weight_scale_inv").shape[0] % 8 == 0);
      }
      for (const std::string name : {"model.layers.1.self_attn.o_proj", "model.layers.0.mlp.down_proj",
                                     "model.layers.2.mlp.shared_experts.down_proj"}) {
        CHECK(find(ckpt, name + ".weight_scale_inv").shape[1] % 8 == 0);
      }
      const bool has_indexer = std::any_of(ckpt.tensors().begin(), ckpt.tensors().end(), [](const auto& ref) {
        return ref.info->name.find(".indexer.") != std::string::npos;
      });
      CHECK(has_indexer == (format == "v3.2"));
    }
  }
}

TEST_CASE("gen_official_checkpoint v4: release names, E8M0 scales, FP4 experts, hash layer, mtp.0 copies") {
  TempDir dir;
  const auto result = generate(dir, {"--format", "v4"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  const auto ckpt = st::Checkpoint::open(dir.str());
  CHECK(ckpt.tensors().size() == v4_tensors(8));
  CHECK(check_scale_shapes(ckpt, ".scale") > 100);
  CHECK(find(ckpt, "layers.0.ffn.experts.3.w1.weight").shape == st::Shape{256, 128});
  CHECK(find(ckpt, "layers.0.ffn.experts.3.w1.weight").dtype == st::DType::I8);
  CHECK(find(ckpt, "layers.0.ffn.experts.3.w2.scale").shape == st::Shape{256, 8});
  CHECK(find(ckpt, "layers.0.ffn.gate.tid2eid").dtype == st::DType::I64);
  CHECK(find(ckpt, "layers.1.ffn.gate.bias").dtype == st::DType::F32);
  CHECK(find(ckpt, "layers.1.attn.indexer.wq_b.scale").dtype == st::DType::F8_E8M0);
  CHECK(find(ckpt, "mtp.0.emb.tok_emb.weight").dtype == st::DType::BF16);
  CHECK(find(ckpt, "mtp.0.head.weight").shape == st::Shape{1024, 256});
  CHECK(find(ckpt, "mtp.0.ffn.shared_experts.w2.weight").dtype == st::DType::F8_E4M3);
  // wo_a rows split over 8 ranks stay whole 128-row blocks (its dequantisation needs them).
  const auto& wo_a = find(ckpt, "layers.2.attn.wo_a.weight");
  CHECK(wo_a.shape[0] % (8 * 128) == 0);
  CHECK(find(ckpt, "layers.2.attn.wo_b.scale").shape[1] % 8 == 0);
}

TEST_CASE("gen_official_checkpoint data holds the special codes the transforms must handle") {
  TempDir v3, v4;
  REQUIRE(generate(v3, {"--format", "v3", "--no-tokenizer"}).exit_code == 0);
  REQUIRE(generate(v4, {"--format", "v4", "--no-tokenizer"}).exit_code == 0);
  const auto c3 = st::Checkpoint::open(v3.str());
  const auto c4 = st::Checkpoint::open(v4.str());
  // Every E4M3 code, NaN (0x7F, 0xFF) and -0 (0x80) among them, in one FP8 weight.
  const auto weight = data_of(c4, "layers.1.attn.wq_b.weight");
  std::set<std::byte> codes(weight.begin(), weight.end());
  CHECK(codes.size() == 256);
  // F32 scale_inv: some NaN, some infinite, some zero (over all of the v3 scales).
  std::size_t nan = 0, inf = 0, zero = 0;
  for (const auto& ref : c3.tensors()) {
    if (!ends_with(ref.info->name, "_scale_inv")) continue;
    const auto bytes = c3.files()[ref.file].data(*ref.info);
    for (std::size_t i = 0; i + 4 <= bytes.size(); i += 4) {
      float v;
      std::memcpy(&v, bytes.data() + i, 4);
      nan += std::isnan(v) ? 1 : 0;
      inf += std::isinf(v) ? 1 : 0;
      zero += v == 0.0f ? 1 : 0;
    }
  }
  CHECK(nan > 0);
  CHECK(inf > 0);
  CHECK(zero > 0);
  // FP4 scales: over the routed experts, 128 x 4 blocks whose largest code is <= 5, blocks holding
  // 0xFF, and E8M0 0x00; FP4 bytes with every low and every high nibble.
  std::size_t tiny_blocks = 0, nan_blocks = 0, zero_codes = 0;
  std::set<int> low, high;
  for (const auto& ref : c4.tensors()) {
    const std::string_view name = ref.info->name;
    if (name.find(".experts.") == std::string::npos) continue;
    const auto bytes = c4.files()[ref.file].data(*ref.info);
    if (ends_with(name, ".weight")) {
      for (std::byte b : bytes)
        low.insert(std::to_integer<int>(b) & 15), high.insert(std::to_integer<int>(b) >> 4);
      continue;
    }
    const std::uint64_t rows = ref.info->shape[0], groups = ref.info->shape[1];
    for (std::uint64_t r0 = 0; r0 < rows; r0 += 128) {
      for (std::uint64_t g0 = 0; g0 < groups; g0 += 4) {
        int largest = 0;
        for (std::uint64_t r = r0; r < r0 + 128; ++r) {
          for (std::uint64_t g = g0; g < g0 + 4; ++g) {
            const int code = std::to_integer<int>(bytes[r * groups + g]);
            largest = std::max(largest, code);
            zero_codes += code == 0 ? 1 : 0;
          }
        }
        tiny_blocks += largest <= 5 ? 1 : 0;
        nan_blocks += largest == 0xFF ? 1 : 0;
      }
    }
  }
  CHECK(tiny_blocks > 0);
  CHECK(nan_blocks > 0);
  CHECK(zero_codes > 0);
  CHECK(low.size() == 16);
  CHECK(high.size() == 16);
}

TEST_CASE("gen_official_checkpoint data is a function of the seed, bad command lines are refused") {
  TempDir a, b, c;
  REQUIRE(generate(a, {"--seed", "5", "--no-tokenizer", "--layers", "1"}).exit_code == 0);
  REQUIRE(generate(b, {"--seed", "5", "--no-tokenizer", "--layers", "1"}).exit_code == 0);
  REQUIRE(generate(c, {"--seed", "6", "--no-tokenizer", "--layers", "1"}).exit_code == 0);
  const auto bytes = [](const TempDir& d) { return test::read_file(d / "model.safetensors"); };
  CHECK(bytes(a) == bytes(b));
  CHECK(bytes(a) != bytes(c));
  TempDir dir;
  CHECK(generate(dir, {"--format", "v5"}).exit_code != 0);
  const auto one_layer_v3 = generate(dir, {"--format", "v3", "--layers", "1"});
  CHECK(one_layer_v3.exit_code == 2);
  CHECK(one_layer_v3.err.find("between 2 and 60") != std::string::npos);
  REQUIRE(generate(dir, {"--layers", "1"}).exit_code == 0);
  const auto again = generate(dir, {"--layers", "1"});
  CHECK(again.exit_code != 0);
  CHECK(again.err.find("already holds") != std::string::npos);
  CHECK(generate(dir, {"--layers", "1", "--force"}).exit_code == 0);
}
