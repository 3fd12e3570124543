// The synthetic checkpoint generator (tools/gen_checkpoint): its files are readable safetensors
// holding exactly the tensors DEEPSEEK_V4.md's inventory implies. Expected counts come from a
// formula over the configuration, written here independently of the generator's own inventory.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <shardwise/safetensors/checkpoint.hpp>

#include "support/support.hpp"

namespace fs = std::filesystem;
using namespace shardwise;
using shardwise::test::run_command;
using shardwise::test::TempDir;

namespace {

// Tensors of one block (`layers.L.` or `mtp.0.`): 2 norms, 6 hc_*, attention (5 GPTQ triples, 2
// norms, attn_sink), the gate and its bias or tid2eid, 9 per routed expert and 9 shared; plus a
// compressor (2 triples, ape, norm) when the ratio is non-zero, and the indexer (2 triples and
// its compressor) when it is 4.
std::size_t block_tensors(std::size_t experts, unsigned ratio) {
  std::size_t n = 2 + 6 + (5 * 3 + 2 + 1) + 2 + 9 * experts + 9;
  if (ratio != 0) n += 2 * 3 + 2;
  if (ratio == 4) n += 2 * 3 + (2 * 3 + 2);
  return n;
}

// All layers, mtp.0 (a block with ratio 0, plus e_proj and h_proj triples, 3 norms, 3 hc_head_*,
// and optionally the embed/head pair the converters skip), and the 6 top-level tensors.
std::size_t checkpoint_tensors(std::size_t experts, const std::vector<unsigned>& ratios,
                               bool mtp_embed_head) {
  std::size_t n = 0;
  for (unsigned ratio : ratios) n += block_tensors(experts, ratio);
  n += block_tensors(experts, 0) + 2 * 3 + 3 + 3 + (mtp_embed_head ? 2 : 0);
  return n + 6;
}

std::string generator() { return test::tools_dir() + "/gen_checkpoint"; }

test::CommandResult generate(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), {generator(), "--out", dir.str()});
  return run_command(args);
}

std::vector<std::string> files_in(const TempDir& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("gen_checkpoint writes the tiny config in both naming styles") {
  const std::size_t expected = checkpoint_tensors(8, {0, 4, 128}, true);
  REQUIRE(expected == 486);
  for (const std::string style : {"inference", "hf"}) {
    SECTION(style) {
      TempDir dir;
      const auto result = generate(dir, {"--style", style});
      INFO(result.err);
      REQUIRE(result.exit_code == 0);
      CHECK(files_in(dir) ==
            std::vector<std::string>{"model.safetensors", "tokenizer.json", "tokenizer_config.json"});
      const auto ckpt = st::Checkpoint::open(dir.str());
      CHECK(ckpt.tensors().size() == expected);
      const std::string embed = style == "hf" ? "model.embed_tokens.weight" : "embed.weight";
      const auto* t = ckpt.files()[0].header().find(embed);
      REQUIRE(t != nullptr);
      CHECK(t->dtype == st::DType::BF16);
      CHECK(t->shape == st::Shape{1024, 256});
    }
  }
}

TEST_CASE("gen_checkpoint overrides layers and experts") {
  TempDir dir;
  const auto result =
      generate(dir, {"--layers", "4", "--experts", "16", "--no-mtp-embed-head", "--no-tokenizer"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  CHECK(files_in(dir) == std::vector<std::string>{"model.safetensors"});
  CHECK(st::Checkpoint::open(dir.str()).tensors().size() == checkpoint_tensors(16, {0, 4, 128, 4}, false));
}

TEST_CASE("gen_checkpoint spreads tensors over files with an index, one GPTQ triple spanning two") {
  TempDir dir;
  const auto result = generate(dir, {"--style", "hf", "--files", "3", "--index"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  CHECK(files_in(dir) ==
        std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                 "model-00003-of-00003.safetensors", "model.safetensors.index.json",
                                 "tokenizer.json", "tokenizer_config.json"});
  const auto ckpt = st::Checkpoint::open(dir.str());  // checks the index against the files
  CHECK(ckpt.tensors().size() == 486);
  std::map<std::string, std::set<std::size_t>> files_of_triple;
  for (const auto& ref : ckpt.tensors()) {
    const std::string name(ref.info->name);
    const auto dot = name.rfind('.');
    const std::string suffix = name.substr(dot + 1);
    if (suffix == "qweight" || suffix == "qzeros" || suffix == "scales")
      files_of_triple[name.substr(0, dot)].insert(ref.file);
  }
  const auto spanning = std::count_if(files_of_triple.begin(), files_of_triple.end(),
                                      [](const auto& entry) { return entry.second.size() > 1; });
  CHECK(spanning >= 1);
}

TEST_CASE("gen_checkpoint --header-only writes the full DeepSeek-V4-Flash inventory as a sparse file") {
  std::vector<unsigned> flash_ratios{0, 0};
  for (int i = 0; i < 20; ++i) flash_ratios.insert(flash_ratios.end(), {4, 128});
  flash_ratios.push_back(4);
  REQUIRE(flash_ratios.size() == 43);
  REQUIRE(checkpoint_tensors(256, flash_ratios, false) == 103'644);  // DEEPSEEK_V4.md's count

  TempDir dir;
  const auto result = generate(dir, {"--config", "flash", "--header-only"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  const auto ckpt = st::Checkpoint::open(dir.str());
  CHECK(ckpt.tensors().size() == 103'644);
  CHECK(ckpt.total_bytes() > 150'000'000'000ULL);
  const auto* sink = ckpt.files()[0].header().find("layers.7.attn.attn_sink");
  REQUIRE(sink != nullptr);
  CHECK(sink->shape == st::Shape{64});
}

TEST_CASE("gen_checkpoint --f32-scales writes the same scale values as F32") {
  TempDir f16, f32;
  REQUIRE(generate(f16, {"--special-scales", "--no-tokenizer", "--seed", "3"}).exit_code == 0);
  REQUIRE(generate(f32, {"--special-scales", "--f32-scales", "--no-tokenizer", "--seed", "3"}).exit_code ==
          0);
  const auto a = st::Checkpoint::open(f16.str()), b = st::Checkpoint::open(f32.str());
  const std::string name = "layers.0.attn.wq_a.scales";
  const auto* half = a.files()[0].header().find(name);
  const auto* single = b.files()[0].header().find(name);
  REQUIRE(half != nullptr);
  REQUIRE(single != nullptr);
  CHECK(half->dtype == st::DType::F16);
  CHECK(single->dtype == st::DType::F32);
  CHECK(single->shape == half->shape);
  // Widened exactly: the F32 NaNs are the F16 ones (sign and payload), the numbers equal.
  const auto h = a.files()[0].data(*half), s = b.files()[0].data(*single);
  std::size_t nans = 0;
  for (std::size_t i = 0; i < h.size() / 2; ++i) {
    std::uint16_t hb;
    std::uint32_t sb;
    std::memcpy(&hb, h.data() + 2 * i, 2);
    std::memcpy(&sb, s.data() + 4 * i, 4);
    const bool half_nan = (hb & 0x7C00) == 0x7C00 && (hb & 0x3FF) != 0;
    nans += half_nan ? 1 : 0;
    if (half_nan) {
      CHECK(sb == ((static_cast<std::uint32_t>(hb & 0x8000) << 16) | 0x7F800000u | ((hb & 0x3FFu) << 13)));
    } else {
      float value;
      std::memcpy(&value, &sb, 4);
      const int exponent = (hb >> 10) & 0x1F, mantissa = hb & 0x3FF;
      const float magnitude = exponent == 0x1F
                                  ? INFINITY
                                  : std::ldexp(static_cast<float>(mantissa + (exponent != 0 ? 1024 : 0)),
                                               std::max(exponent, 1) - 25);
      CHECK(value == ((hb & 0x8000) != 0 ? -magnitude : magnitude));
    }
  }
  CHECK(nans > 0);
}

TEST_CASE("gen_checkpoint data is a function of the seed") {
  TempDir a, b, c;
  REQUIRE(generate(a, {"--seed", "5", "--no-tokenizer"}).exit_code == 0);
  REQUIRE(generate(b, {"--seed", "5", "--no-tokenizer"}).exit_code == 0);
  REQUIRE(generate(c, {"--seed", "6", "--no-tokenizer"}).exit_code == 0);
  const auto bytes = [](const TempDir& d) { return test::read_file(d / "model.safetensors"); };
  CHECK(bytes(a) == bytes(b));
  CHECK(bytes(a) != bytes(c));
}

TEST_CASE("gen_checkpoint refuses bad command lines and stale folders") {
  TempDir dir;
  CHECK(generate(dir, {"--config", "huge"}).exit_code != 0);
  CHECK(generate(dir, {"--files", "0"}).exit_code != 0);
  REQUIRE(generate(dir, {}).exit_code == 0);
  const auto again = generate(dir, {});
  CHECK(again.exit_code != 0);
  CHECK(again.err.find("already holds") != std::string::npos);
  CHECK(generate(dir, {"--force"}).exit_code == 0);
}
