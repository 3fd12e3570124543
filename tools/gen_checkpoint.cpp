// gen_checkpoint: writes a synthetic DeepSeek-V4-shaped W4A16 (GPTQ-packed) checkpoint, for the
// demo, the tests and the benchmarks. Data is streamed tensor by tensor through the library's
// writer (bounded memory whatever the size); --header-only leaves the data as holes (sparse files)
// so full-size DeepSeek-V4-Flash and -Pro headers cost almost no disk.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/writer.hpp>

#include "checkpoint_data.hpp"
#include "deepseek_v4_inventory.hpp"

namespace fs = std::filesystem;
using shardwise::Error;
using shardwise::ErrorKind;
namespace st = shardwise::st;

namespace {

struct Options {
  std::string out;
  std::string config = "tiny";
  unsigned layers = 0;        // 0: the config's
  std::uint64_t experts = 0;  // 0: the config's
  std::string style = "inference";
  unsigned files = 1;
  bool index = false;
  bool header_only = false;
  bool force = false;
  gen::FillOptions fill;
  gen::InventoryOptions inventory;
  int tokenizer = -1;  // -1: the config's default
  int mtp_embed_head = -1;
  unsigned mtp_blocks = 0;        // 0: the config's (1)
  std::uint64_t mtp_experts = 0;  // 0: as the backbone
  bool markov_head = false;
};

// One output file: its name and the inventory entries it holds (indices into the sorted inventory).
struct FilePart {
  std::string name;
  std::size_t first = 0;
  std::size_t last = 0;  // exclusive
};

bool is_gptq_part(const std::string& name) {
  for (const char* suffix : {".qweight", ".qzeros", ".scales", ".g_idx"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

std::string base_of(const std::string& name) { return name.substr(0, name.rfind('.')); }

// True when the cut before tensor `i` separates two members of one GPTQ triple.
bool cuts_a_triple(const std::vector<gen::TensorSpec>& tensors, std::size_t i) {
  return i > 0 && i < tensors.size() && is_gptq_part(tensors[i - 1].name) && is_gptq_part(tensors[i].name) &&
         base_of(tensors[i - 1].name) == base_of(tensors[i].name);
}

// Splits the name-sorted inventory into `n` runs of about equal bytes. The first cut is moved to
// the nearest place inside a GPTQ triple, so that readers meet a triple spanning two files.
std::vector<FilePart> split_files(const std::vector<gen::TensorSpec>& tensors, unsigned n) {
  if (n == 0 || n > tensors.size()) {
    throw Error(ErrorKind::usage,
                fmt::format("--files {} must be between 1 and the tensor count {}", n, tensors.size()));
  }
  if (n == 1) return {{"model.safetensors", 0, tensors.size()}};
  std::vector<std::uint64_t> end_bytes;  // cumulative bytes after each tensor
  std::uint64_t total = 0;
  for (const auto& t : tensors) end_bytes.push_back(total += *st::byte_size(t.dtype, t.shape));
  std::vector<std::size_t> cuts{0};
  for (unsigned k = 1; k < n; ++k) {
    const std::uint64_t target = total / n * k;
    auto at = static_cast<std::size_t>(std::lower_bound(end_bytes.begin(), end_bytes.end(), target) -
                                       end_bytes.begin()) +
              1;
    at = std::clamp(at, cuts.back() + 1, tensors.size() - (n - k));
    const auto fits = [&](std::size_t c) { return c > cuts.back() && c <= tensors.size() - (n - k); };
    if (k == 1) {
      for (std::size_t d = 0; d < tensors.size(); ++d) {
        if (at >= d && fits(at - d) && cuts_a_triple(tensors, at - d)) {
          at -= d;
          break;
        }
        if (fits(at + d) && cuts_a_triple(tensors, at + d)) {
          at += d;
          break;
        }
      }
    }
    cuts.push_back(at);
  }
  cuts.push_back(tensors.size());
  std::vector<FilePart> parts;
  for (unsigned k = 0; k < n; ++k) {
    parts.push_back({fmt::format("model-{:05d}-of-{:05d}.safetensors", k + 1, n), cuts[k], cuts[k + 1]});
  }
  return parts;
}

// --header-only: the length prefix and header, then a hole up to the full size. OutputFile reserves
// the data's disk space up front (right for real data, impossible for a 153 GB hole), so this
// path writes the file itself; the layout still comes from the library.
void write_sparse_file(const fs::path& path, const st::FileLayout& layout) {
  const fs::path temp = st::temp_path_for(path.string());
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<char>((layout.header.size() >> (8 * i)) & 0xFF);
  bytes += layout.header;
  shardwise::register_temp_file(temp.string());
  try {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << bytes;
    if (!out.flush()) shardwise::throw_os_error("cannot write", temp.string(), errno);
    out.close();
    fs::resize_file(temp, layout.file_size);  // extends with a hole: no data blocks allocated
    fs::rename(temp, path);
  } catch (...) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    shardwise::unregister_temp_file(temp.string());
    throw;
  }
  shardwise::unregister_temp_file(temp.string());
}

// Writes one file: header from the entries, then each tensor's data in 1 MiB pieces in data order.
std::uint64_t write_file(const fs::path& folder, const FilePart& part,
                         const std::vector<gen::TensorSpec>& tensors, const Options& options) {
  std::vector<st::OutputTensor> entries;
  for (std::size_t i = part.first; i < part.last; ++i)
    entries.push_back({tensors[i].name, tensors[i].dtype, tensors[i].shape});
  const st::FileLayout layout = st::layout_file(entries);
  if (options.header_only) {
    write_sparse_file(folder / part.name, layout);
    return layout.file_size;
  }
  st::OutputFile file = st::OutputFile::create((folder / part.name).string(), layout);
  {
    constexpr std::size_t kChunk = std::size_t{1} << 20;  // a multiple of every element size
    std::vector<std::byte> buffer(kChunk);
    for (std::size_t index : layout.order) {
      gen::TensorFiller filler(tensors[part.first + index], options.fill);
      for (std::uint64_t done = 0; done < layout.bytes[index];) {
        if (shardwise::interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, layout.bytes[index] - done));
        filler.fill(std::span(buffer).first(n));
        file.write_at(layout.offset[index] + done, std::span<const std::byte>(buffer).first(n));
        done += n;
      }
    }
  }
  file.commit();
  return layout.file_size;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) shardwise::throw_os_error("cannot write", path.string(), errno);
}

std::uint64_t tensor_bytes(const std::vector<gen::TensorSpec>& tensors) {
  std::uint64_t total = 0;
  for (const auto& t : tensors) total += *st::byte_size(t.dtype, t.shape);
  return total;
}

void write_index(const fs::path& folder, const std::vector<FilePart>& parts,
                 const std::vector<gen::TensorSpec>& tensors) {
  nlohmann::json index;
  index["metadata"]["total_size"] = tensor_bytes(tensors);
  index["weight_map"] = nlohmann::json::object();
  for (const auto& part : parts) {
    for (std::size_t i = part.first; i < part.last; ++i) index["weight_map"][tensors[i].name] = part.name;
  }
  write_text(folder / "model.safetensors.index.json", index.dump(2) + "\n");
}

// A small, well-formed tokenizer pair: the converters only copy these files.
void write_tokenizer(const fs::path& folder, std::uint64_t seed) {
  nlohmann::json vocab = nlohmann::json::object();
  const char* pieces[] = {"<|begin_of_sentence|>", "<|end_of_sentence|>", "a", "b", "c", "ab", "bc", "abc"};
  int id = 0;
  for (const char* p : pieces) vocab[p] = id++;
  nlohmann::json tokenizer = {{"version", "1.0"},
                              {"added_tokens", nlohmann::json::array()},
                              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "ab c"}}}},
                              {"shardwise_synthetic_seed", seed}};
  write_text(folder / "tokenizer.json", tokenizer.dump(2) + "\n");
  nlohmann::json config = {{"bos_token", "<|begin_of_sentence|>"},
                           {"eos_token", "<|end_of_sentence|>"},
                           {"model_max_length", 4096},
                           {"tokenizer_class", "PreTrainedTokenizerFast"}};
  write_text(folder / "tokenizer_config.json", config.dump(2) + "\n");
}

// Files a previous run may have left that would join this checkpoint: refused unless --force.
void clear_stale_files(const fs::path& folder, bool force) {
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".safetensors" || name == "model.safetensors.index.json" ||
        name == "tokenizer.json" || name == "tokenizer_config.json") {
      stale.push_back(entry.path());
    }
  }
  if (stale.empty()) return;
  if (!force) {
    throw Error(ErrorKind::io,
                fmt::format("{} already holds {} (and {} more checkpoint files); use an empty folder "
                            "or --force to replace them",
                            folder.string(), stale.front().filename().string(), stale.size() - 1));
  }
  for (const auto& path : stale) fs::remove(path);
}

gen::ModelConfig resolve_config(const Options& o) {
  gen::ModelConfig c = gen::config_named(o.config);
  if (o.layers > 0) c.layers = o.layers;
  if (o.experts > 0) c.experts = o.experts;
  if (o.tokenizer >= 0) c.tokenizer = o.tokenizer == 1;
  if (o.mtp_embed_head >= 0) c.mtp_embed_head = o.mtp_embed_head == 1;
  if (o.mtp_blocks > 0) c.mtp_blocks = o.mtp_blocks;
  c.mtp_experts = o.mtp_experts;
  c.markov_head = o.markov_head;
  return c;
}

int run(Options o) {
  const gen::ModelConfig config = resolve_config(o);
  o.inventory.style = o.style == "hf" ? gen::Style::hf : gen::Style::inference;
  o.fill.experts = config.experts;
  o.fill.group_size = o.inventory.group_size;
  std::vector<gen::TensorSpec> tensors = gen::build_inventory(config, o.inventory);
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  const std::vector<FilePart> parts = split_files(tensors, o.files);

  const auto start = std::chrono::steady_clock::now();
  const fs::path folder = o.out;
  fs::create_directories(folder);
  clear_stale_files(folder, o.force);
  shardwise::install_cleanup_handlers();
  std::uint64_t file_bytes = 0;
  for (const auto& part : parts) file_bytes += write_file(folder, part, tensors, o);
  if (o.index) write_index(folder, parts, tensors);
  if (config.tokenizer) write_tokenizer(folder, o.fill.seed);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(
      "{}: {} ({} style, {} layers, {} experts{}): {} tensors, {} tensor bytes, {} files of {} bytes{} "
      "in {:.2f} s\n",
      o.out, config.name, o.style, config.layers, config.experts,
      o.inventory.quant_gate_embed ? ", gate+embed quantised" : "", tensors.size(), tensor_bytes(tensors),
      parts.size(), file_bytes, o.header_only ? " (header only, sparse)" : "", seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Write a synthetic DeepSeek-V4-shaped W4A16 (GPTQ-packed) checkpoint, for demos, tests and "
      "benchmarks."};
  Options o;
  app.add_option("--out", o.out, "Output folder (created if missing)")->required();
  app.add_option("--config", o.config,
                 "Model shape: tiny (a few MB; every split works at mp 1-8), flash or pro "
                 "(DeepSeek-V4-Flash / -Pro dimensions)")
      ->check(CLI::IsMember({"tiny", "flash", "pro"}));
  app.add_option("--layers", o.layers, "Number of layers (besides the MTP blocks), overriding the config's")
      ->check(CLI::Range(1U, 1000U));
  app.add_option("--experts", o.experts, "Routed experts per layer, overriding the config's")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{100000}));
  app.add_option("--style", o.style,
                 "Tensor names: inference (as released: layers.L.attn.wq_a) or hf "
                 "(older HF/V3 names: model.layers.L.self_attn.q_a_proj)")
      ->check(CLI::IsMember({"inference", "hf"}));
  app.add_option("--files", o.files,
                 "Spread the tensors (in name order, cut by bytes) over N files "
                 "model-0000i-of-0000N.safetensors; at least one GPTQ triple then spans two files");
  app.add_flag("--index", o.index, "Write model.safetensors.index.json");
  app.add_flag("--header-only", o.header_only,
               "Full-size headers, data left as holes (sparse files, nothing written)");
  app.add_flag("--special-scales", o.fill.special_scales,
               "Scales include NaNs (several payloads, both signs), "
               "+-inf, +-0, fp16 subnormals and fp16->bf16 rounding ties");
  app.add_flag_callback(
      "--f32-scales", [&] { o.inventory.scales_dtype = st::DType::F32; },
      "Write the GPTQ scales as F32 instead of F16 (same values; with --special-scales, NaNs and all)");
  app.add_option("--group-size", o.inventory.group_size,
                 "GPTQ quantisation group: input rows per scale and zero point (default 128)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 20));
  app.add_flag("--act-order", o.inventory.act_order,
               "GPTQ act-order: write each linear's g_idx (I32 [in], the group of each input channel)");
  app.add_flag("--quant-gate-embed", o.inventory.quant_gate_embed,
               "The trap upload: ffn.gate and embed GPTQ-quantised too");
  app.add_flag_callback(
      "--tokenizer", [&] { o.tokenizer = 1; },
      "Write a small tokenizer.json and tokenizer_config.json (default for tiny)");
  app.add_flag_callback(
      "--no-tokenizer", [&] { o.tokenizer = 0; }, "Do not write them (default for flash and pro)");
  app.add_flag_callback(
      "--mtp-embed-head", [&] { o.mtp_embed_head = 1; },
      "Emit mtp.0 embed/head tensors, absent from the real release, which converters must skip "
      "(default for tiny)");
  app.add_flag_callback(
      "--no-mtp-embed-head", [&] { o.mtp_embed_head = 0; }, "Do not emit them (default for flash and pro)");
  app.add_option("--mtp-blocks", o.mtp_blocks,
                 "MTP blocks mtp.0 .. mtp.(N-1) (default 1; the V4.1 DSpark variant has 3)")
      ->check(CLI::Range(1U, 16U));
  app.add_option("--mtp-experts", o.mtp_experts,
                 "Routed experts of each MTP block's MoE (default: as the backbone; DSpark: 128 against 384)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{100000}));
  app.add_flag("--markov-head", o.markov_head, "Emit DSpark's markov_head.markov_w1.weight");
  app.add_option("--seed", o.fill.seed, "Seed of the tensor data (same seed, same bytes)");
  app.add_flag("--force", o.force, "Replace checkpoint files already in the output folder");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const Error& e) {
    std::fprintf(stderr, "gen_checkpoint: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gen_checkpoint: error: %s\n", e.what());
    return 1;
  }
}
