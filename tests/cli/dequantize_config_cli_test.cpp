// The bundled dequantising rules as a release is found: the FP8 block size read from config.json's
// `weight_block_size` list (and refused when it is not one), GPTQ and AWQ told apart without
// --rules (by the config's quant_method and the g_idx), members and scales whose weight is absent
// refused as orphans, and what the plan shows of a packed or per-tensor dequantization. Expected
// elements are computed here from the E4M3 and BF16 definitions (exact_formats.hpp).

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "convert/fixture.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"
#include "transform/exact_formats.hpp"

namespace fs = std::filesystem;
using shardwise::test::build_safetensors;
using shardwise::test::parse_safetensors;
using shardwise::test::RawTensor;
using shardwise::test::read_file;
using shardwise::test::run_shardwise;
using shardwise::test::TempDir;
using shardwise::test::write_file;
namespace exact = shardwise::test::exact;

namespace {

std::string f32_bytes(const std::vector<float>& values) {
  std::string out(values.size() * 4, '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

std::uint16_t u16_at(const std::string& bytes, std::size_t i) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(bytes[2 * i]) |
                                    (static_cast<unsigned char>(bytes[2 * i + 1]) << 8));
}

// One file, and config.json when given.
void write_checkpoint(const fs::path& dir, const std::vector<RawTensor>& tensors, const std::string& config) {
  write_file(dir / "model.safetensors", build_safetensors(tensors));
  if (!config.empty()) write_file(dir / "config.json", config);
}

std::string zeros(std::size_t bytes) { return std::string(bytes, '\0'); }

// A GPTQ 4-bit module [out=16, in=64], group 32 (two groups), with or without its g_idx.
std::vector<RawTensor> gptq_module(const std::string& m, bool g_idx) {
  std::vector<RawTensor> t = {{m + ".qweight", "I32", {8, 16}, zeros(8 * 16 * 4)},
                              {m + ".qzeros", "I32", {2, 2}, zeros(2 * 2 * 4)},
                              {m + ".scales", "F16", {2, 16}, zeros(2 * 16 * 2)}};
  if (g_idx) t.push_back({m + ".g_idx", "I32", {64}, zeros(64 * 4)});
  return t;
}

// An AWQ module [out=16, in=64], group 32: qweight [in, out/8], qzeros [G, out/8], scales [G, out].
std::vector<RawTensor> awq_module(const std::string& m) {
  return {{m + ".qweight", "I32", {64, 2}, zeros(64 * 2 * 4)},
          {m + ".qzeros", "I32", {2, 2}, zeros(2 * 2 * 4)},
          {m + ".scales", "F16", {2, 16}, zeros(2 * 16 * 2)}};
}

constexpr const char* kGptqConfig =
    R"({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 32}, "torch_dtype": "float16"})";
constexpr const char* kAwqConfig =
    R"({"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm", "zero_point": true}})";

}  // namespace

// ---- 1. FP8 block size from weight_block_size ----

TEST_CASE("fp8-to-bf16 reads its block from config.json's weight_block_size list, exactly") {
  // [10, 20] on blocks of 4 x 8: a [3, 3] grid, partial blocks at both edges.
  constexpr std::uint64_t kRows = 10, kCols = 20, kBr = 4, kBc = 8, kSr = 3, kSc = 3;
  std::vector<std::uint8_t> codes(kRows * kCols);
  for (std::size_t k = 0; k < codes.size(); ++k) codes[k] = static_cast<std::uint8_t>((k * 37 + 11) % 256);
  std::vector<float> scale(kSr * kSc);
  for (std::size_t k = 0; k < scale.size(); ++k) scale[k] = 0.03125f * static_cast<float>(k + 1);
  const std::string w = "model.layers.0.mlp.up_proj.weight";
  TempDir in, out;
  write_checkpoint(in.path(),
                   {{w, "F8_E4M3", {kRows, kCols}, std::string(codes.begin(), codes.end())},
                    {w + "_scale_inv", "F32", {kSr, kSc}, f32_bytes(scale)}},
                   R"({"quantization_config": {"quant_method": "fp8", "weight_block_size": [4, 8]}})");

  const auto planned = run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-to-bf16"});
  INFO(planned.err);
  REQUIRE(planned.exit_code == 0);
  CHECK_THAT(planned.out,
             Catch::Contains("block_rows = 4 (config.json: quantization_config.weight_block_size[0])"));
  CHECK_THAT(planned.out,
             Catch::Contains("block_cols = 8 (config.json: quantization_config.weight_block_size[1])"));
  CHECK_THAT(planned.out, Catch::Contains("blocks of 4x8"));
  const auto explained = run_shardwise({"explain", "--rules", "fp8-to-bf16", "-i", in.str(), w});
  INFO(explained.err);
  CHECK(explained.exit_code == 0);
  CHECK_THAT(explained.out,
             Catch::Contains("block_rows = 4 (config.json: quantization_config.weight_block_size[0])"));

  const auto converted =
      run_shardwise({"convert", "-i", in.str(), "-o", out.str(), "--rules", "fp8-to-bf16", "-q"});
  INFO(converted.err);
  REQUIRE(converted.exit_code == 0);
  const auto tensors = parse_safetensors(read_file(out.path() / "model.safetensors"));
  REQUIRE(tensors.count(w) == 1);
  const std::string& bytes = tensors.at(w).bytes;
  std::size_t wrong = 0;
  for (std::uint64_t r = 0; r < kRows; ++r) {
    for (std::uint64_t c = 0; c < kCols; ++c) {
      const float s = scale[(r / kBr) * kSc + c / kBc];
      const std::uint16_t want =
          exact::round_to_bf16(exact::product(exact::e4m3_value(codes[r * kCols + c]), s), 0x7FC0);
      if (u16_at(bytes, r * kCols + c) != want) ++wrong;
    }
  }
  CHECK(wrong == 0);
  // The flag agrees: accepted; contradicts: refused (exit 2), naming the key.
  CHECK(run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-to-bf16", "--block-rows", "4"}).exit_code ==
        0);
  const auto contradicted =
      run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-to-bf16", "--block-cols", "16"});
  CHECK(contradicted.exit_code == 2);
  CHECK_THAT(contradicted.err, Catch::Contains("--block-cols 16 contradicts the checkpoint: config.json: "
                                               "quantization_config.weight_block_size[1] is 8"));
}

TEST_CASE("fp8-to-bf16 refuses a weight_block_size that is not positive integers, naming the key") {
  const std::string w = "a.weight";
  const std::vector<RawTensor> tensors = {{w, "F8_E4M3", {4, 4}, zeros(16)},
                                          {w + "_scale_inv", "F32", {1, 1}, zeros(4)}};
  struct Bad {
    const char* list;
    const char* message;
  };
  const Bad cases[] = {
      {"[128.0, 128]",
       "config.json: quantization_config.weight_block_size[0] is 128.0, not a non-negative integer"},
      {"[128, 0]",
       "config.json: quantization_config.weight_block_size[1] is 0, outside the range [1, 65536]"},
      {"[128, 100000]",
       "config.json: quantization_config.weight_block_size[1] is 100000, outside the range [1, 65536]"},
      {"[\"128\", 128]",
       "config.json: quantization_config.weight_block_size[0] is \"128\", not a non-negative integer"},
  };
  for (const Bad& bad : cases) {
    INFO(bad.list);
    TempDir in;
    write_checkpoint(in.path(), tensors,
                     std::string(R"({"quantization_config": {"quant_method": "fp8", "weight_block_size": )") +
                         bad.list + "}}");
    const auto planned = run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-to-bf16"});
    CHECK(planned.exit_code == 4);
    CHECK_THAT(planned.err, Catch::Contains(bad.message));
  }
  // A flag out of range is the command line's mistake (exit 2).
  TempDir in;
  write_checkpoint(in.path(), tensors, "");
  const auto flag = run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-to-bf16", "--block-rows", "0"});
  CHECK(flag.exit_code == 2);
  CHECK_THAT(flag.err,
             Catch::Contains("--block-rows 0 is outside the range [1, 65536] of parameter block_rows"));
}

TEST_CASE("a parameter's range is shown wherever its flag is: --help with and without --rules, rules check") {
  // With --rules: the flag's own line. Without: the list of each bundled file's parameters.
  const auto with_rules = run_shardwise({"convert", "--rules", "fp8-to-bf16", "--help"});
  REQUIRE(with_rules.exit_code == 0);
  CHECK_THAT(with_rules.out, Catch::Contains("--block-rows UINT in [1, 65536]"));
  const auto without = run_shardwise({"plan", "--help"});
  REQUIRE(without.exit_code == 0);
  CHECK_THAT(without.out, Catch::Contains("--block-cols UINT in [1, 65536] (default: from config.json"));
  const auto check = run_shardwise({"rules", "check", "fp8-to-bf16"});
  REQUIRE(check.exit_code == 0);
  CHECK_THAT(check.out, Catch::Contains("--block-rows N in [1, 65536] (default: from config.json"));
  // A parameter without a range keeps the plain form.
  CHECK_THAT(check.out, Catch::Contains("--dtype bf16|f16 (default: bf16)"));
}

// ---- 2. GPTQ and AWQ told apart without --rules ----

TEST_CASE("without --rules, an AWQ release goes to awq-to-bf16 and a GPTQ one to gptq-to-bf16") {
  struct Release {
    const char* label;
    std::vector<RawTensor> tensors;
    std::string config;
    const char* rules;
  };
  const std::string m = "model.layers.0.self_attn.q_proj";
  const Release releases[] = {
      {"AWQ, config says awq", awq_module(m), kAwqConfig, "awq-to-bf16"},
      {"AWQ, no config", awq_module(m), "", "awq-to-bf16"},
      {"GPTQ with g_idx", gptq_module(m, true), kGptqConfig, "gptq-to-bf16"},
      {"GPTQ without g_idx, config says gptq", gptq_module(m, false), kGptqConfig, "gptq-to-bf16"},
  };
  for (const Release& release : releases) {
    INFO(release.label);
    TempDir in, out;
    write_checkpoint(in.path(), release.tensors, release.config);
    const auto planned = run_shardwise({"plan", "-i", in.str(), "--group-size", "32"});
    INFO(planned.err);
    CHECK(planned.exit_code == 0);
    CHECK_THAT(planned.err, Catch::StartsWith(std::string("shardwise: rules: ") + release.rules + " ("));
    const auto converted = run_shardwise({"convert", "-i", in.str(), "-o", out.str(), "--group-size", "32"});
    INFO(converted.err);
    REQUIRE(converted.exit_code == 0);
    const auto tensors = parse_safetensors(read_file(out.path() / "model.safetensors"));
    REQUIRE(tensors.count(m + ".weight") == 1);
    CHECK(tensors.at(m + ".weight").shape == std::vector<std::uint64_t>{16, 64});
  }
  // A config that names neither refuses both, each with its reason.
  TempDir in;
  write_checkpoint(in.path(), awq_module(m), R"({"quantization_config": {"quant_method": "bitsandbytes"}})");
  const auto refused = run_shardwise({"plan", "-i", in.str()});
  CHECK(refused.exit_code == 4);
  CHECK_THAT(refused.err, Catch::Contains("gptq-to-bf16: the checkpoint's config refuses it: config.json: "
                                          "quantization_config.quant_method is \"bitsandbytes\""));
  CHECK_THAT(refused.err, Catch::Contains("awq-to-bf16: the checkpoint's config refuses it"));
}

// ---- 3. Orphans ----

TEST_CASE("a packed member or a scale whose weight is absent is refused as an orphan, naming both") {
  TempDir gptq;
  std::vector<RawTensor> tensors = gptq_module("model.layers.0.mlp.up_proj", true);
  tensors.push_back({"model.layers.0.mlp.gate_proj.scales", "F16", {2, 16}, zeros(64)});
  tensors.push_back({"model.layers.0.mlp.gate_proj.g_idx", "I32", {64}, zeros(256)});
  write_checkpoint(gptq.path(), tensors, kGptqConfig);
  const auto planned = run_shardwise({"plan", "-i", gptq.str(), "--rules", "gptq-to-bf16"});
  CHECK(planned.exit_code == 4);
  for (const char* member : {"scales", "g_idx"}) {
    CHECK_THAT(planned.err,
               Catch::Contains(
                   std::string("model.layers.0.mlp.gate_proj.") + member +
                   " (model.safetensors): an orphan: skip: packed-members (<bundled>/gptq-to-bf16.yaml:"));
  }
  CHECK_THAT(planned.err,
             Catch::Contains("skips it as a companion of model.layers.0.mlp.gate_proj.qweight, but "
                             "model.layers.0.mlp.gate_proj.qweight is not in the checkpoint"));
  CHECK_THAT(planned.err, !Catch::Contains("up_proj"));

  TempDir awq;
  std::vector<RawTensor> awq_tensors = awq_module("m.a");
  awq_tensors.push_back({"m.b.qzeros", "I32", {2, 2}, zeros(16)});
  write_checkpoint(awq.path(), awq_tensors, kAwqConfig);
  const auto awq_planned = run_shardwise({"plan", "-i", awq.str(), "--rules", "awq-to-bf16"});
  CHECK(awq_planned.exit_code == 4);
  CHECK_THAT(awq_planned.err, Catch::Contains("m.b.qzeros (model.safetensors): an orphan"));
  CHECK_THAT(awq_planned.err, Catch::Contains("m.b.qweight is not in the checkpoint"));

  TempDir fp8;
  write_checkpoint(fp8.path(),
                   {{"a.weight", "F8_E4M3", {4, 4}, zeros(16)},
                    {"a.weight_scale_inv", "F32", {1, 1}, zeros(4)},
                    {"b.weight_scale_inv", "F32", {1, 1}, zeros(4)},
                    {"c.weight", "BF16", {4, 1}, zeros(8)},
                    {"c.weight_scale", "BF16", {4, 1}, zeros(8)}},
                   "");
  const auto fp8_planned = run_shardwise({"plan", "-i", fp8.str(), "--rules", "fp8-to-bf16"});
  CHECK(fp8_planned.exit_code == 4);
  CHECK_THAT(fp8_planned.err,
             Catch::Contains("b.weight_scale_inv (model.safetensors): an orphan: skip: weight-scales"));
  CHECK_THAT(fp8_planned.err, Catch::Contains("b.weight is not in the checkpoint"));
  // A scale beside a weight that is not FP8: nothing reads it.
  CHECK_THAT(fp8_planned.err, Catch::Contains("c.weight_scale (model.safetensors): an orphan"));
  CHECK_THAT(fp8_planned.err, Catch::Contains("but no transform of c.weight (BF16[4, 1]) reads it"));
  CHECK_THAT(fp8_planned.err, !Catch::Contains("a.weight_scale_inv (model.safetensors)"));
}

// ---- 4. What the plan shows ----

TEST_CASE("the plan names every member a packed dequantization consumes, and a per-tensor scale as such") {
  TempDir gptq;
  const std::string m = "model.layers.0.mlp.up_proj";
  write_checkpoint(gptq.path(), gptq_module(m, true), kGptqConfig);
  const auto text = run_shardwise({"plan", "-i", gptq.str(), "--rules", "gptq-to-bf16"});
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(text.out, Catch::Contains("dequantize_packed (gptq 4-bit, group 32) of " + m + ".qweight, " + m +
                                       ".qzeros, " + m + ".scales, " + m + ".g_idx (transform[gptq-bf16]"));
  const auto json = run_shardwise({"plan", "-i", gptq.str(), "--rules", "gptq-to-bf16", "--format", "json"});
  REQUIRE(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::Contains("\"members\": [\"" + m + ".qweight\", \"" + m + ".qzeros\", \"" + m +
                                       ".scales\", \"" + m +
                                       ".g_idx\"], \"packing\": \"gptq\", \"bits\": 4, "
                                       "\"group_size\": 32"));

  TempDir fp8;
  write_checkpoint(fp8.path(),
                   {{"t.weight", "F8_E4M3", {4, 4}, zeros(16)},
                    {"t.weight_scale", "F32", {1}, f32_bytes({1.0f})},
                    {"c.weight", "F8_E4M3", {4, 4}, zeros(16)},
                    {"c.weight_scale", "BF16", {4, 1}, zeros(8)}},
                   "");
  const auto fp8_text = run_shardwise({"plan", "-i", fp8.str(), "--rules", "fp8-to-bf16"});
  INFO(fp8_text.err);
  REQUIRE(fp8_text.exit_code == 0);
  CHECK_THAT(fp8_text.out,
             Catch::Contains("dequantize with t.weight_scale, per tensor (transform[fp8-bf16]"));
  CHECK_THAT(fp8_text.out,
             Catch::Contains("dequantize with c.weight_scale, per channel (transform[fp8-bf16]"));
  const auto fp8_json =
      run_shardwise({"plan", "-i", fp8.str(), "--rules", "fp8-to-bf16", "--format", "json"});
  REQUIRE(fp8_json.exit_code == 0);
  CHECK_THAT(fp8_json.out, Catch::Contains("\"block\": \"per_tensor\""));
  CHECK_THAT(fp8_json.out, Catch::Contains("\"block\": \"per_channel\""));
  for (const auto* view : {&fp8_text.out, &fp8_json.out, &text.out, &json.out})
    CHECK_THAT(*view, !Catch::Contains("18446744073709551615"));
}
