// gen_quant_checkpoint: writes a synthetic quantised Hugging Face release of a Llama-shaped model
// (GPTQ v1/v2, AWQ GEMM or FP8 with block scales) of about --size bytes, for the dequantising
// benchmark (bench/dequantize). The data is pseudo-random and fast to make, not meaningful: codes,
// zero points and FP8 bytes uniform, scales small positive F16/BF16 values. config.json carries
// the quantisation_config the bundled rules read; several files get Hugging Face's index.

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/hf_shards.hpp>
#include <shardwise/safetensors/writer.hpp>

namespace fs = std::filesystem;
using shardwise::Error;
using shardwise::ErrorKind;
namespace st = shardwise::st;

namespace {

struct Options {
  std::string out;
  std::string format = "gptq";  // gptq, gptq_v2, awq, fp8
  std::string size = "2.5GB";
  std::uint64_t hidden = 4096, intermediate = 11008, vocab = 8192, group_size = 128, block = 128;
  std::string max_file = "2GB";
  std::uint64_t seed = 1;
};

// What a value holds: uniform bits, or a small positive scale (F16 or BF16 bits), or row / gs.
enum class Fill { random, f16_scale, bf16_scale, group_index, one_bf16 };

struct Tensor {
  std::string name;
  st::DType dtype;
  st::Shape shape;
  Fill fill = Fill::random;
  std::uint64_t group_size = 1;  // Fill::group_index
};

std::uint64_t bytes_of(const Tensor& t) { return *st::byte_size(t.dtype, t.shape); }

// One linear [out, in] as the format stores it.
void add_linear(std::vector<Tensor>& t, const Options& o, const std::string& m, std::uint64_t out,
                std::uint64_t in) {
  const std::uint64_t groups = (in + o.group_size - 1) / o.group_size;
  if (o.format == "awq") {
    t.push_back({m + ".qweight", st::DType::I32, {in, out / 8}});
    t.push_back({m + ".qzeros", st::DType::I32, {groups, out / 8}});
    t.push_back({m + ".scales", st::DType::F16, {groups, out}, Fill::f16_scale});
  } else if (o.format == "fp8") {
    t.push_back({m + ".weight", st::DType::F8_E4M3, {out, in}});
    t.push_back({m + ".weight_scale_inv",
                 st::DType::BF16,
                 {(out + o.block - 1) / o.block, (in + o.block - 1) / o.block},
                 Fill::bf16_scale});
  } else {
    t.push_back({m + ".qweight", st::DType::I32, {in / 8, out}});
    t.push_back({m + ".qzeros", st::DType::I32, {groups, out / 8}});
    t.push_back({m + ".scales", st::DType::F16, {groups, out}, Fill::f16_scale});
    t.push_back({m + ".g_idx", st::DType::I32, {in}, Fill::group_index, o.group_size});
  }
}

std::vector<Tensor> layer(const Options& o, std::uint64_t l) {
  std::vector<Tensor> t;
  const std::string p = fmt::format("model.layers.{}.", l);
  for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"})
    add_linear(t, o, p + "self_attn." + proj, o.hidden, o.hidden);
  add_linear(t, o, p + "mlp.gate_proj", o.intermediate, o.hidden);
  add_linear(t, o, p + "mlp.up_proj", o.intermediate, o.hidden);
  add_linear(t, o, p + "mlp.down_proj", o.hidden, o.intermediate);
  t.push_back({p + "input_layernorm.weight", st::DType::BF16, {o.hidden}, Fill::one_bf16});
  t.push_back({p + "post_attention_layernorm.weight", st::DType::BF16, {o.hidden}, Fill::one_bf16});
  return t;
}

std::vector<Tensor> inventory(const Options& o, std::uint64_t target) {
  std::vector<Tensor> t = {{"model.embed_tokens.weight", st::DType::BF16, {o.vocab, o.hidden}},
                           {"lm_head.weight", st::DType::BF16, {o.vocab, o.hidden}},
                           {"model.norm.weight", st::DType::BF16, {o.hidden}, Fill::one_bf16}};
  std::uint64_t total = 0;
  for (const Tensor& x : t) total += bytes_of(x);
  for (std::uint64_t l = 0; total < target || l == 0; ++l) {
    for (Tensor& x : layer(o, l)) {
      total += bytes_of(x);
      t.push_back(std::move(x));
    }
  }
  std::sort(t.begin(), t.end(), [](const Tensor& a, const Tensor& b) { return a.name < b.name; });
  return t;
}

// Fills `out` (the bytes [first, first + out.size()) of tensor `t`).
void fill(const Tensor& t, std::uint64_t first, std::span<std::byte> out, std::uint64_t& state) {
  const auto next = [&state] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  switch (t.fill) {
    case Fill::random:
      for (std::size_t i = 0; i < out.size(); i += 8) {
        const std::uint64_t v = next();
        std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, out.size() - i));
      }
      return;
    case Fill::f16_scale:
    case Fill::bf16_scale:
    case Fill::one_bf16:
      for (std::size_t i = 0; i + 1 < out.size(); i += 2) {
        const auto r = static_cast<std::uint16_t>(next());
        const std::uint16_t bits = t.fill == Fill::one_bf16 ? std::uint16_t{0x3F80}
                                   : t.fill == Fill::f16_scale
                                       ? static_cast<std::uint16_t>(0x1C00 + (r & 0x7FF))
                                       : static_cast<std::uint16_t>(0x3B00 + (r & 0xFF));
        std::memcpy(out.data() + i, &bits, 2);
      }
      return;
    case Fill::group_index:
      for (std::size_t i = 0; i + 3 < out.size(); i += 4) {
        const auto g = static_cast<std::uint32_t>((first + i) / 4 / t.group_size);
        std::memcpy(out.data() + i, &g, 4);
      }
      return;
  }
}

std::uint64_t write_file(const fs::path& path, const std::vector<Tensor>& tensors, std::uint64_t seed) {
  std::vector<st::OutputTensor> header;
  for (const Tensor& t : tensors) header.push_back({t.name, t.dtype, t.shape});
  const st::FileLayout layout = st::layout_file(header, {{"format", "pt"}});
  st::OutputFile file = st::OutputFile::create(path.string(), layout);
  std::vector<std::byte> buffer(std::size_t{8} << 20);
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (const std::size_t i : layout.order) {
    for (std::uint64_t done = 0; done < layout.bytes[i];) {
      const std::uint64_t n = std::min<std::uint64_t>(buffer.size(), layout.bytes[i] - done);
      const std::span<std::byte> chunk(buffer.data(), static_cast<std::size_t>(n));
      fill(tensors[i], done, chunk, state);
      file.write_at(layout.offset[i] + done, chunk);
      done += n;
    }
  }
  file.commit();
  return layout.file_size;
}

nlohmann::json quantization_config(const Options& o) {
  if (o.format == "fp8")
    return {{"quant_method", "fp8"},
            {"fmt", "e4m3"},
            {"activation_scheme", "dynamic"},
            {"weight_block_size", {o.block, o.block}}};
  if (o.format == "awq")
    return {{"quant_method", "awq"},
            {"bits", 4},
            {"group_size", o.group_size},
            {"version", "gemm"},
            {"zero_point", true}};
  return {{"quant_method", "gptq"}, {"bits", 4},    {"group_size", o.group_size},
          {"desc_act", false},      {"sym", false}, {"checkpoint_format", o.format}};
}

int run(const Options& o) {
  if (o.hidden % 128 != 0 || o.intermediate % 128 != 0 || o.group_size == 0 || o.block == 0)
    throw Error(ErrorKind::usage, "--hidden and --intermediate must be multiples of 128; sizes positive");
  const std::vector<Tensor> tensors = inventory(o, st::parse_max_shard_size(o.size));
  const std::uint64_t max_file = st::parse_max_shard_size(o.max_file);
  // Files cut in name order where the running size passes max_file.
  std::vector<std::vector<Tensor>> files(1);
  std::uint64_t in_file = 0;
  for (const Tensor& t : tensors) {
    if (in_file > 0 && in_file + bytes_of(t) > max_file) files.emplace_back(), in_file = 0;
    files.back().push_back(t);
    in_file += bytes_of(t);
  }
  const fs::path folder = o.out;
  fs::create_directories(folder);
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::uint64_t total = 0;
  for (std::size_t f = 0; f < files.size(); ++f) {
    const std::string name = files.size() == 1
                                 ? "model.safetensors"
                                 : fmt::format("model-{:05}-of-{:05}.safetensors", f + 1, files.size());
    total += write_file(folder / name, files[f], o.seed + f);
    for (const Tensor& t : files[f]) weight_map.emplace_back(t.name, name);
  }
  if (files.size() > 1) {
    std::uint64_t data = 0;
    for (const Tensor& t : tensors) data += bytes_of(t);
    std::ofstream(folder / "model.safetensors.index.json") << st::hf_index_json(std::move(weight_map), data);
  }
  const nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}},        {"model_type", "llama"}, {"hidden_size", o.hidden},
      {"intermediate_size", o.intermediate},          {"vocab_size", o.vocab}, {"torch_dtype", "bfloat16"},
      {"quantization_config", quantization_config(o)}};
  std::ofstream(folder / "config.json") << config.dump(2) << "\n";
  fmt::print("{}: {} ({} tensors in {} files, {} bytes)\n", o.out, o.format, tensors.size(), files.size(),
             total);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Write a synthetic quantised Hugging Face release (GPTQ, AWQ or FP8) of about --size bytes, "
      "Llama-shaped, for bench/dequantize."};
  Options o;
  app.add_option("--out", o.out, "Output folder (created if missing)")->required();
  app.add_option("--format", o.format, "gptq (v1), gptq_v2, awq (GEMM) or fp8 (BF16 block scales)")
      ->check(CLI::IsMember({"gptq", "gptq_v2", "awq", "fp8"}));
  app.add_option("--size", o.size, "About this many bytes (whole layers are added until it is reached)");
  app.add_option("--hidden", o.hidden, "Hidden size");
  app.add_option("--intermediate", o.intermediate, "MLP size");
  app.add_option("--vocab", o.vocab, "Rows of the BF16 embeddings and head");
  app.add_option("--group-size", o.group_size, "GPTQ/AWQ input rows per group");
  app.add_option("--block", o.block, "FP8 block size (square), written to weight_block_size");
  app.add_option("--max-file", o.max_file, "Largest file before the next one starts");
  app.add_option("--seed", o.seed, "Seed of the data");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const Error& e) {
    std::fprintf(stderr, "gen_quant_checkpoint: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gen_quant_checkpoint: error: %s\n", e.what());
    return 1;
  }
}
