// gen_official_checkpoint: writes a small synthetic checkpoint in one of DeepSeek's official
// formats (V3, V3.2: FP8 with F32 block scales under HF names; V4: FP8 with E8M0 block scales and
// FP4 routed experts under the release's names), shape-faithful and deterministic from --seed, with
// the special codes the numeric transforms must handle (official_data.hpp). For differential tests
// against DeepSeek's own converters (tools/differential-official) and for the tests.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/writer.hpp>

#include "official_data.hpp"
#include "official_inventory.hpp"

namespace fs = std::filesystem;
using shardwise::Error;
using shardwise::ErrorKind;
namespace st = shardwise::st;
namespace official = gen::official;

namespace {

struct Options {
  std::string out;
  std::string format = "v4";
  std::string shapes = "small";
  official::Dims dims;
  unsigned files = 1;
  bool index = false;
  bool tokenizer = true;
  bool force = false;
  std::uint64_t seed = 0;
};

struct FilePart {
  std::string name;
  std::size_t first = 0, last = 0;  // [first, last) of the name-sorted inventory
};

std::uint64_t bytes_of(const official::Tensor& t) { return *st::byte_size(t.dtype, t.shape); }

// `n` runs of the name-sorted tensors, cut where the running byte count passes k/n of the total.
std::vector<FilePart> split_files(const std::vector<official::Tensor>& tensors, unsigned n) {
  if (n == 0 || n > tensors.size()) {
    throw Error(ErrorKind::usage,
                fmt::format("--files {} must be between 1 and the tensor count {}", n, tensors.size()));
  }
  if (n == 1) return {{"model.safetensors", 0, tensors.size()}};
  std::uint64_t total = 0;
  for (const auto& t : tensors) total += bytes_of(t);
  std::vector<FilePart> parts;
  std::size_t first = 0;
  std::uint64_t done = 0;
  for (unsigned k = 1; k <= n; ++k) {
    std::size_t last = first;
    const std::uint64_t target = total / n * k;
    while (last < tensors.size() - (n - k) && (k == n || done < target || last == first))
      done += bytes_of(tensors[last++]);
    parts.push_back({fmt::format("model-{:05d}-of-{:05d}.safetensors", k, n), first, last});
    first = last;
  }
  return parts;
}

std::uint64_t write_file(const fs::path& folder, const FilePart& part,
                         const std::vector<official::Tensor>& tensors, const Options& o) {
  std::vector<st::OutputTensor> entries;
  for (std::size_t i = part.first; i < part.last; ++i)
    entries.push_back({tensors[i].name, tensors[i].dtype, tensors[i].shape});
  const st::FileLayout layout = st::layout_file(entries);
  st::OutputFile file = st::OutputFile::create((folder / part.name).string(), layout);
  for (std::size_t index : layout.order) {
    const std::vector<std::byte> data =
        official::tensor_data(tensors[part.first + index], o.seed, o.dims.experts);
    file.write_at(layout.offset[index], data);
  }
  file.commit();
  return layout.file_size;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) shardwise::throw_os_error("cannot write", path.string(), errno);
}

void write_index(const fs::path& folder, const std::vector<FilePart>& parts,
                 const std::vector<official::Tensor>& tensors) {
  nlohmann::ordered_json index;
  std::uint64_t total = 0;
  for (const auto& t : tensors) total += bytes_of(t);
  index["metadata"]["total_size"] = total;
  index["weight_map"] = nlohmann::ordered_json::object();
  for (const auto& part : parts) {
    for (std::size_t i = part.first; i < part.last; ++i) index["weight_map"][tensors[i].name] = part.name;
  }
  write_text(folder / "model.safetensors.index.json", index.dump(2) + "\n");
}

// What the official converters copy (V3: every name containing "token"; V4: these two files).
void write_tokenizer(const fs::path& folder, std::uint64_t seed) {
  const nlohmann::ordered_json tokenizer = {
      {"version", "1.0"},
      {"model",
       {{"type", "BPE"}, {"vocab", {{"<|begin_of_sentence|>", 0}, {"a", 1}, {"b", 2}}}, {"merges", {"a b"}}}},
      {"shardwise_synthetic_seed", seed}};
  write_text(folder / "tokenizer.json", tokenizer.dump(2) + "\n");
  const nlohmann::ordered_json config = {{"bos_token", "<|begin_of_sentence|>"},
                                         {"tokenizer_class", "PreTrainedTokenizerFast"}};
  write_text(folder / "tokenizer_config.json", config.dump(2) + "\n");
}

void refuse_stale_files(const fs::path& folder, bool force) {
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".safetensors" || name == "model.safetensors.index.json" ||
        name.find("token") != std::string::npos) {
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

official::Format format_named(const std::string& name) {
  if (name == "v3") return official::Format::v3;
  if (name == "v3.2") return official::Format::v32;
  return official::Format::v4;
}

int run(const Options& o) {
  if (o.dims.vocab % 8 != 0)
    throw Error(ErrorKind::usage, fmt::format("--vocab {} is not a multiple of 8", o.dims.vocab));
  official::Dims dims = o.dims;
  dims.shapes = o.shapes == "real" ? official::Shapes::real : official::Shapes::small;
  std::vector<official::Tensor> tensors;
  try {
    tensors = official::build_official_inventory(format_named(o.format), dims);
  } catch (const std::invalid_argument& e) {
    throw Error(ErrorKind::usage, e.what());
  }
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  const std::vector<FilePart> parts = split_files(tensors, o.files);
  const fs::path folder = o.out;
  fs::create_directories(folder);
  refuse_stale_files(folder, o.force);
  std::uint64_t file_bytes = 0;
  for (const auto& part : parts) file_bytes += write_file(folder, part, tensors, o);
  if (o.index) write_index(folder, parts, tensors);
  if (o.tokenizer) write_tokenizer(folder, o.seed);
  fmt::print(
      "{}: DeepSeek {} official format ({} shapes, {} layers, {} experts): {} tensors in {} files of {} "
      "bytes\n",
      o.out, o.format, o.shapes, o.dims.layers, o.dims.experts, tensors.size(), parts.size(), file_bytes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Write a small synthetic checkpoint in one of DeepSeek's official formats (FP8 / FP4 with block "
      "scales), holding the special codes numeric transforms must handle; deterministic from --seed."};
  Options o;
  app.add_option("--out", o.out, "Output folder (created if missing)")->required();
  app.add_option("--format", o.format,
                 "v3: HF names, FP8 E4M3 + F32 weight_scale_inv, model.layers.61 as the MTP layer; "
                 "v3.2: v3 plus the indexer; v4: release names, FP8 + F8_E8M0 .scale, FP4 routed experts "
                 "(I8 + F8_E8M0 per 32), hash layer, mtp.0 with emb/head copies")
      ->check(CLI::IsMember({"v3", "v3.2", "v4"}));
  app.add_option("--layers", o.dims.layers,
                 "Decoder layers besides the MTP layer (v3: layer 0 dense, then MoE)")
      ->check(CLI::Range(1U, 60U));
  app.add_option("--experts", o.dims.experts, "Routed experts per MoE layer")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1024}));
  app.add_option("--shapes", o.shapes,
                 "small: tiny matrices (tests); real: the released models' matrix sizes (v3, v3.2: "
                 "DeepSeek-V3; v4: DeepSeek-V4-Flash), for benchmarks")
      ->check(CLI::IsMember({"small", "real"}));
  app.add_option("--vocab", o.dims.vocab,
                 "Rows of the embeddings and heads instead of the shape set's (small 1000 / 1024, "
                 "real 129280); a multiple of 8, so that mp 8 can split them")
      ->check(CLI::Range(std::uint64_t{8}, std::uint64_t{1} << 20));
  app.add_option("--files", o.files, "Spread the tensors (in name order, cut by bytes) over N files");
  app.add_flag("--index", o.index, "Write model.safetensors.index.json");
  app.add_flag("!--no-tokenizer", o.tokenizer, "Do not write tokenizer.json and tokenizer_config.json");
  app.add_option("--seed", o.seed, "Seed of the tensor data (same seed, same bytes)");
  app.add_flag("--force", o.force, "Replace checkpoint files already in the output folder");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const Error& e) {
    std::fprintf(stderr, "gen_official_checkpoint: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gen_official_checkpoint: error: %s\n", e.what());
    return 1;
  }
}
