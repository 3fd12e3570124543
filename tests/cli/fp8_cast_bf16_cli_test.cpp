// The bundled rules fp8-cast-bf16 (DeepSeek-V3's fp8_cast_bf16.py) end to end on a hand-built
// checkpoint: E4M3 weights with F32 128x128 scales found in another file (a partial edge block),
// a one-byte weight without its scale (kept, with a note), an orphan scale, BF16 tensors. Expected
// BF16 bits are written out by hand (every product here is exact in BF16; NaN is triton's 0x7FFF).

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "convert/fixture.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::build_safetensors;
using shardwise::test::parse_safetensors;
using shardwise::test::RawTensor;
using shardwise::test::read_file;
using shardwise::test::run_shardwise;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

std::string f32_bytes(std::uint32_t bits) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((bits >> (8 * i)) & 0xFF);
  return out;
}

std::uint16_t bf16_at(const std::string& bytes, std::size_t i) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(bytes[2 * i]) |
                                    (static_cast<unsigned char>(bytes[2 * i + 1]) << 8));
}

// E4M3 codes used and their BF16 products with the scales 0.5 (0x3F000000) and 3.0 (0x40400000).
struct Code {
  unsigned char e4m3;
  std::uint16_t times_half;
  std::uint16_t times_three;
};
const Code kCodes[] = {
    {0x38, 0x3F00, 0x4040},  //  1.0
    {0x40, 0x3F80, 0x40C0},  //  2.0
    {0xB8, 0xBF00, 0xC040},  // -1.0
    {0x7F, 0x7FFF, 0x7FFF},  //  NaN
    {0x00, 0x0000, 0x0000},  //  0
    {0x01, 0x3A80, 0x3BC0},  //  2^-9 (the smallest subnormal)
};

constexpr std::size_t kRows = 2, kCols = 130;  // two 128-column blocks, the second partial

std::string weight_bytes() {
  std::string out;
  for (std::size_t i = 0; i < kRows * kCols; ++i) out += static_cast<char>(kCodes[i % 6].e4m3);
  return out;
}

void make_checkpoint(const TempDir& dir) {
  const std::string a = "model-00001-of-00002.safetensors", b = "model-00002-of-00002.safetensors";
  write_file(dir / a, build_safetensors({
                          {"layers.0.proj.weight", "F8_E4M3", {kRows, kCols}, weight_bytes()},
                          {"layers.0.norm.weight", "BF16", {2}, std::string("\x80\x3f\x00\x40", 4)},
                          {"layers.0.loose.weight", "F8_E4M3", {1, 2}, "\x38\x40"},
                      }));
  write_file(
      dir / b,
      build_safetensors({
          {"layers.0.proj.weight_scale_inv", "F32", {1, 2}, f32_bytes(0x3F000000) + f32_bytes(0x40400000)},
          {"layers.9.gone.weight_scale_inv", "F32", {1, 1}, f32_bytes(0x3F800000)},
      }));
  write_file(dir / "model.safetensors.index.json",
             "{\"metadata\": {}, \"weight_map\": {"
             "\"layers.9.gone.weight_scale_inv\": \"" +
                 b +
                 "\", "
                 "\"layers.0.proj.weight_scale_inv\": \"" +
                 b +
                 "\", "
                 "\"layers.0.proj.weight\": \"" +
                 a +
                 "\", "
                 "\"layers.0.norm.weight\": \"" +
                 a +
                 "\", "
                 "\"layers.0.loose.weight\": \"" +
                 a + "\"}}");
}

}  // namespace

TEST_CASE(
    "fp8-cast-bf16: E4M3 weights dequantised with scales from another file, files mirrored, index "
    "rewritten") {
  TempDir in, out;
  make_checkpoint(in);
  const auto plan = run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-cast-bf16"});
  REQUIRE(plan.exit_code == 0);
  CHECK_THAT(plan.out,
             Catch::Contains("note: layers.0.loose.weight: no block scale layers.0.loose.weight_scale_inv"));

  const auto run = run_shardwise({"convert", "--input-fp8-hf-path", in.str(), "--output-bf16-hf-path",
                                  out.str(), "--rules", "fp8-cast-bf16", "-q"});
  REQUIRE(run.exit_code == 0);
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(out.path())) names.insert(entry.path().filename().string());
  CHECK(names == std::set<std::string>{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                       "model.safetensors.index.json", "shardwise-manifest.json"});

  const auto first = parse_safetensors(read_file(out / "model-00001-of-00002.safetensors"));
  REQUIRE(first.count("layers.0.proj.weight") == 1);
  const auto& w = first.at("layers.0.proj.weight");
  CHECK(w.dtype == "BF16");
  CHECK(w.shape == std::vector<std::uint64_t>{kRows, kCols});
  REQUIRE(w.bytes.size() == 2 * kRows * kCols);
  for (std::size_t i = 0; i < kRows * kCols; ++i) {
    const Code& code = kCodes[i % 6];
    const bool second_block = i % kCols >= 128;
    CAPTURE(i);
    CHECK(bf16_at(w.bytes, i) == (second_block ? code.times_three : code.times_half));
  }
  CHECK(first.at("layers.0.norm.weight").bytes == std::string("\x80\x3f\x00\x40", 4));
  CHECK(first.at("layers.0.loose.weight").dtype == "F8_E4M3");
  CHECK(first.at("layers.0.loose.weight").bytes == "\x38\x40");
  CHECK(first.size() == 3);
  // Every scale is dropped from the files: the second file is empty, as save_file({}) writes it.
  CHECK(read_file(out / "model-00002-of-00002.safetensors") == std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  // The consumed scale leaves the index; the orphan one stays, as the script leaves it.
  CHECK(read_file(out / "model.safetensors.index.json") ==
        "{\n  \"metadata\": {},\n  \"weight_map\": {\n"
        "    \"layers.9.gone.weight_scale_inv\": \"model-00002-of-00002.safetensors\",\n"
        "    \"layers.0.proj.weight\": \"model-00001-of-00002.safetensors\",\n"
        "    \"layers.0.norm.weight\": \"model-00001-of-00002.safetensors\",\n"
        "    \"layers.0.loose.weight\": \"model-00001-of-00002.safetensors\"\n  }\n}");

  CHECK(run_shardwise({"verify", "-i", in.str(), "-o", out.str(), "--rules", "fp8-cast-bf16", "-q"})
            .exit_code == 0);
}

TEST_CASE("fp8-cast-bf16: listed, and --model-parallel refused") {
  const auto list = run_shardwise({"rules", "list"});
  REQUIRE(list.exit_code == 0);
  CHECK_THAT(list.out, Catch::Contains("fp8-cast-bf16"));
  TempDir in;
  make_checkpoint(in);
  const auto mp =
      run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-cast-bf16", "--model-parallel", "1"});
  CHECK(mp.exit_code == 0);  // 1 is what a mirrored plan is anyway
  const auto mp2 =
      run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-cast-bf16", "--model-parallel", "2"});
  CHECK(mp2.exit_code == 2);
}
