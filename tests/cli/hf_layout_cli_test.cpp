// Hugging Face's layout as an output (rules `output: {layout: hf}`) end to end: convert writes
// save_pretrained's shards with their metadata, the index and config.json as transformers writes
// them (the expected texts below are written out by hand from QUANT_FORMATS.md section 4, not
// produced by shardwise); verify, --resume, the folder's manifest, reshard's refusal, and the
// options that do not apply.

#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/fixture.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::Args;
using shardwise::test::build_safetensors;
using shardwise::test::joined;
using shardwise::test::parse_safetensors;
using shardwise::test::RawTensor;
using shardwise::test::read_file;
using shardwise::test::run_shardwise;
using shardwise::test::source_dir;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

const std::string kIndex = "model.safetensors.index.json";
const std::string kFirst = "model-00001-of-00002.safetensors";
const std::string kSecond = "model-00002-of-00002.safetensors";

std::string bytes(std::size_t n, char first) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += static_cast<char>(first + static_cast<char>(i));
  return out;
}

// E4M3 codes 0x30..0x37 (0.5 .. 0.9375) and 0x38.. (1 .. 1.875); scale 1.0 and 2.0.
const std::string kOne = std::string("\x00\x00\x80\x3f", 4);
const std::string kTwo = std::string("\x00\x00\x00\x40", 4);

// A quantised release in two files: output tensors (BF16 unless said) lm_head 8 bytes, embed 16,
// layers.0 16 and layers.1 16 (dequantised), norm 16 (F32): 72 bytes.
void make_checkpoint(const TempDir& dir) {
  write_file(dir / "model-00001-of-00002.safetensors",
             build_safetensors({{"model.layers.0.proj.weight", "F8_E4M3", {2, 4}, bytes(8, '\x30')},
                                {"model.layers.0.proj.weight_scale_inv", "F32", {1, 1}, kOne},
                                {"model.embed.weight", "BF16", {4, 2}, bytes(16, 'e')}}));
  write_file(dir / "model-00002-of-00002.safetensors",
             build_safetensors({{"model.layers.1.proj.weight", "F8_E4M3", {2, 4}, bytes(8, '\x38')},
                                {"model.layers.1.proj.weight_scale_inv", "F32", {1, 1}, kTwo},
                                {"lm_head.weight", "BF16", {2, 2}, bytes(8, 'h')},
                                {"model.norm.weight", "F32", {4}, bytes(16, 'n')}}));
  write_file(
      dir / "config.json",
      R"({"architectures": ["X"], "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}, "torch_dtype": "bfloat16", "vocab_size": 4})");
  write_file(dir / "quant_config.json", "{}");
  write_file(dir / "tokenizer.json", "{\"t\": 1}");
}

const std::string kExpectedConfig =
    "{\n"
    "  \"architectures\": [\n"
    "    \"X\"\n"
    "  ],\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"vocab_size\": 4\n"
    "}\n";

// max 40: natural order lm_head 8, embed 16, layers.0 16 (40: full), layers.1 16, norm 16.
const std::string kExpectedIndex =
    "{\n"
    "  \"metadata\": {\n"
    "    \"total_size\": 72\n"
    "  },\n"
    "  \"weight_map\": {\n"
    "    \"lm_head.weight\": \"model-00001-of-00002.safetensors\",\n"
    "    \"model.embed.weight\": \"model-00001-of-00002.safetensors\",\n"
    "    \"model.layers.0.proj.weight\": \"model-00001-of-00002.safetensors\",\n"
    "    \"model.layers.1.proj.weight\": \"model-00002-of-00002.safetensors\",\n"
    "    \"model.norm.weight\": \"model-00002-of-00002.safetensors\"\n"
    "  }\n"
    "}\n";

// safetensors' save_file: metadata first, then the tensors by dtype (F32 before BF16), then name.
std::string padded(std::string header) {
  while (header.size() % 8 != 0) header += ' ';
  return header;
}
const std::string kSecondHeader = padded(
    R"({"__metadata__":{"format":"pt"},"model.norm.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
    R"("model.layers.1.proj.weight":{"dtype":"BF16","shape":[2,4],"data_offsets":[16,32]}})");

std::string rules() { return source_dir() + "/tests/data/rules/hf-fp8.yaml"; }

Args convert(const TempDir& in, const TempDir& out, const Args& extra = {}) {
  return joined(
      {"convert", "-i", in.str(), "-o", out.str(), "--rules", rules(), "--max-shard-size", "40", "-q"},
      extra);
}

Args verify(const TempDir& in, const TempDir& out) {
  return {"verify", "-i", in.str(), "-o", out.str(), "--rules", rules(), "--max-shard-size", "40", "-q"};
}

std::set<std::string> listing(const fs::path& folder) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) names.insert(entry.path().filename().string());
  return names;
}

std::string header_of(const std::string& file) {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < 8; ++i) n |= std::uint64_t{static_cast<unsigned char>(file[i])} << (8 * i);
  return file.substr(8, n);
}

}  // namespace

TEST_CASE("hf layout: convert writes save_pretrained's shards, index, config.json and side files") {
  TempDir in, out;
  make_checkpoint(in);
  const auto run = run_shardwise(convert(in, out));
  REQUIRE(run.exit_code == 0);
  CHECK(listing(out.path()) == std::set<std::string>{kFirst, kSecond, kIndex, "config.json", "tokenizer.json",
                                                     "shardwise-manifest.json"});
  CHECK(read_file(out / kIndex) == kExpectedIndex);
  CHECK(read_file(out / "config.json") == kExpectedConfig);
  CHECK(read_file(out / "tokenizer.json") == "{\"t\": 1}");
  CHECK(header_of(read_file(out / kSecond)) == kSecondHeader);
  const auto first = parse_safetensors(read_file(out / kFirst));
  CHECK(first.size() == 3);
  CHECK(first.at("model.embed.weight").bytes == bytes(16, 'e'));
  CHECK(first.at("lm_head.weight").bytes == bytes(8, 'h'));
  // 0x30 (0.5) x 1.0 = BF16 0x3F00; 0x38 (1.0) x 2.0 = 0x4000.
  CHECK(first.at("model.layers.0.proj.weight").bytes.substr(0, 2) == std::string("\x00\x3f", 2));
  const auto second = parse_safetensors(read_file(out / kSecond));
  CHECK(second.at("model.layers.1.proj.weight").bytes.substr(0, 2) == std::string("\x00\x40", 2));
  CHECK(second.at("model.norm.weight").bytes == bytes(16, 'n'));

  const auto manifest = nlohmann::json::parse(read_file(out / "shardwise-manifest.json"));
  CHECK(manifest["output"]["layout"] == "hf");
  CHECK(manifest["output"]["max_shard_size"] == 40);
  CHECK(manifest["params"]["mp"] == 1);

  // One shard: model.safetensors and no index (the rules' 5GB).
  TempDir whole;
  REQUIRE(run_shardwise({"convert", "-i", in.str(), "-o", whole.str(), "--rules", rules(), "-q"}).exit_code ==
          0);
  CHECK(listing(whole.path()) == std::set<std::string>{"model.safetensors", "config.json", "tokenizer.json",
                                                       "shardwise-manifest.json"});
  CHECK(parse_safetensors(read_file(whole / "model.safetensors")).size() == 5);
}

// A converted folder converted again: its shardwise-manifest.json describes another conversion, and
// a side-file pattern ('*' in fp8-to-bf16) must not copy it over the output's own.
TEST_CASE("hf layout: an input's shardwise manifest is not copied as a side file") {
  TempDir in, out;
  make_checkpoint(in);
  write_file(in / "shardwise-manifest.json", "{\"from\": \"another conversion\"}");
  const auto run =
      run_shardwise({"convert", "-i", in.str(), "-o", out.str(), "--rules", "fp8-to-bf16", "-q"});
  REQUIRE(run.exit_code == 0);
  const auto manifest = nlohmann::json::parse(read_file(out / "shardwise-manifest.json"));
  CHECK(manifest.contains("shardwise_manifest"));
  CHECK(read_file(out / "shardwise-manifest.json").find("another conversion") == std::string::npos);
  const auto verify = run_shardwise({"verify", "-i", in.str(), "-o", out.str(), "-q"});
  INFO(verify.out);
  CHECK(verify.exit_code == 0);
}

TEST_CASE("hf layout: plan shows each tensor's file and what happens to each side file") {
  TempDir in;
  make_checkpoint(in);
  const auto text = run_shardwise({"plan", "-i", in.str(), "--rules", rules(), "--max-shard-size", "40"});
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(text.out, Catch::Contains("2 files in Hugging Face's layout (max shard size 40 bytes)"));
  CHECK_THAT(text.out,
             Catch::Contains("tokenizer.json, config.json (without its quantisation, dtype bfloat16), "
                             "model.safetensors.index.json (written), quant_config.json (not copied)"));
  const auto json = run_shardwise(
      {"plan", "-i", in.str(), "--rules", rules(), "--max-shard-size", "40", "--format", "json"});
  REQUIRE(json.exit_code == 0);
  const auto doc = nlohmann::json::parse(json.out);
  CHECK(doc["output_naming"] == "hf");
  CHECK(doc["max_shard_size"] == 40);
  REQUIRE(doc["outputs"].size() == 2);
  CHECK(doc["outputs"][1]["file"] == kSecond);
  CHECK(doc["outputs"][1]["tensors"].size() == 2);
  CHECK(doc["dropped_side_files"] == nlohmann::json::array({"quant_config.json"}));
}

TEST_CASE("hf layout: verify checks files, index and bytes, --resume keeps finished files") {
  TempDir in, out;
  make_checkpoint(in);
  REQUIRE(run_shardwise(convert(in, out)).exit_code == 0);
  CHECK(run_shardwise(verify(in, out)).exit_code == 0);
  CHECK(run_shardwise({"verify", "-o", out.str(), "--manifest-only", "-q"}).exit_code == 0);

  // Without --max-shard-size, verify plans with the size the manifest records.
  CHECK(run_shardwise({"verify", "-i", in.str(), "-o", out.str(), "--rules", rules(), "-q"}).exit_code == 0);
  // Another max shard size is another plan: the files it expects are not there.
  const auto other = run_shardwise(
      {"verify", "-i", in.str(), "-o", out.str(), "--rules", rules(), "--max-shard-size", "5GB", "-q"});
  CHECK(other.exit_code == 6);
  CHECK_THAT(other.out, Catch::Contains("model.safetensors: missing"));
  CHECK_THAT(other.out,
             Catch::Contains(kSecond + ": unexpected output file: the plan writes 1 Hugging Face file"));

  // One byte of a tensor changed.
  std::string damaged = read_file(out / kSecond);
  damaged[damaged.size() - 1] = static_cast<char>(damaged.back() ^ 1);
  write_file(out / kSecond, damaged);
  const auto bad = run_shardwise(verify(in, out));
  CHECK(bad.exit_code == 6);
  CHECK_THAT(bad.out, Catch::Contains(kSecond));
  CHECK(run_shardwise({"verify", "-o", out.str(), "--manifest-only", "-q"}).exit_code == 6);

  // An index that disagrees with the files.
  fs::remove(out / kSecond);
  const auto resumed = run_shardwise(joined(convert(in, out), {"--resume"}));
  REQUIRE(resumed.exit_code == 0);
  CHECK(run_shardwise(verify(in, out)).exit_code == 0);
  write_file(out / kIndex, kExpectedIndex + " ");
  const auto index = run_shardwise(verify(in, out));
  CHECK(index.exit_code == 6);
  CHECK_THAT(index.out, Catch::Contains(kIndex));

  // --resume with another max shard size keeps nothing.
  const auto changed = run_shardwise({"convert", "-i", in.str(), "-o", out.str(), "--rules", rules(),
                                      "--max-shard-size", "100", "--resume"});
  CHECK(changed.exit_code != 0);
  CHECK_THAT(changed.err, Catch::Contains("the output layout changed"));
}

TEST_CASE("hf layout: reshard refuses the folder, -m and bad sizes are usage errors") {
  TempDir in, out, again;
  make_checkpoint(in);
  REQUIRE(run_shardwise(convert(in, out)).exit_code == 0);
  const auto reshard = run_shardwise({"reshard", "--from", out.str(), "-o", again.str(), "-m", "2"});
  CHECK(reshard.exit_code == 4);
  CHECK_THAT(reshard.err, Catch::Contains("Hugging Face's layout"));
  CHECK_THAT(reshard.err, Catch::Contains("not rank files"));

  const auto mp = run_shardwise({"plan", "-i", in.str(), "--rules", rules(), "-m", "2"});
  CHECK(mp.exit_code == 2);
  CHECK_THAT(mp.err, Catch::Contains("which has no ranks: --model-parallel does not apply (given 2)"));
  for (const std::string size : {"5GiB", "0", "lots", "0.0KB"}) {
    CAPTURE(size);
    const auto bad = run_shardwise({"plan", "-i", in.str(), "--rules", rules(), "--max-shard-size", size});
    CHECK(bad.exit_code == 2);
    CHECK_THAT(bad.err, Catch::Contains("max shard size '" + size + "'"));
  }
  const auto both =
      run_shardwise({"plan", "-i", in.str(), "--rules", rules(), "--mirror", "--max-shard-size", "1"});
  CHECK(both.exit_code == 2);
  const auto not_hf =
      run_shardwise({"plan", "-i", in.str(), "--rules", source_dir() + "/tests/data/rules/mirror-keep.yaml",
                     "--max-shard-size", "1GB"});
  CHECK(not_hf.exit_code == 2);
  CHECK_THAT(not_hf.err,
             Catch::Contains("--max-shard-size applies to rules whose output is Hugging Face's layout"));
}

TEST_CASE(
    "hf layout --mirror: the input's files, each tensor in its source's file, the index as transformers") {
  TempDir in, out;
  make_checkpoint(in);
  write_file(in / kIndex,
             "{\"metadata\": {}, \"weight_map\": {"
             "\"model.layers.0.proj.weight\": \"" +
                 kFirst + "\", \"model.layers.0.proj.weight_scale_inv\": \"" + kFirst +
                 "\", \"model.embed.weight\": \"" + kFirst + "\", \"model.layers.1.proj.weight\": \"" +
                 kSecond + "\", \"model.layers.1.proj.weight_scale_inv\": \"" + kSecond +
                 "\", \"lm_head.weight\": \"" + kSecond + "\", \"model.norm.weight\": \"" + kSecond + "\"}}");
  const auto run =
      run_shardwise({"convert", "-i", in.str(), "-o", out.str(), "--rules", rules(), "--mirror", "-q"});
  REQUIRE(run.exit_code == 0);
  CHECK(read_file(out / kIndex) ==
        "{\n"
        "  \"metadata\": {\n"
        "    \"total_size\": 72\n"
        "  },\n"
        "  \"weight_map\": {\n"
        "    \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
        "    \"model.embed.weight\": \"model-00001-of-00002.safetensors\",\n"
        "    \"model.layers.0.proj.weight\": \"model-00001-of-00002.safetensors\",\n"
        "    \"model.layers.1.proj.weight\": \"model-00002-of-00002.safetensors\",\n"
        "    \"model.norm.weight\": \"model-00002-of-00002.safetensors\"\n"
        "  }\n"
        "}\n");
  CHECK(parse_safetensors(read_file(out / kSecond)).size() == 3);
  CHECK(run_shardwise({"verify", "-i", in.str(), "-o", out.str(), "--rules", rules(), "--mirror", "-q"})
            .exit_code == 0);
}
