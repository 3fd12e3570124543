// Mirrored output (rules `output: {mirror: true}`) end to end: plan, convert, verify, --ranks, the
// rewritten index byte for byte (as CPython's json.dump(..., indent=2) writes it: the expected text
// below is written out by hand from that rule, not produced by shardwise), and the refusals.

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
using shardwise::test::build_safetensors;
using shardwise::test::parse_safetensors;
using shardwise::test::RawTensor;
using shardwise::test::read_file;
using shardwise::test::run_shardwise;
using shardwise::test::source_dir;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

const std::string kFirst = "model-00001-of-00002.safetensors";
const std::string kSecond = "model-00002-of-00002.safetensors";
const std::string kIndex = "model.safetensors.index.json";
const std::string kCafe = "caf\xc3\xa9.norm";  // U+00E9: escaped in the rewritten index

std::string bytes(std::size_t n, char first) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += static_cast<char>(first + static_cast<char>(i));
  return out;
}

const std::vector<RawTensor> kFirstTensors = {
    {"layers.0.proj.weight", "F8_E4M3", {2, 4}, bytes(8, 'a')},
    {"layers.0.proj.weight_scale_inv", "F32", {1, 1}, bytes(4, 'k')},
    {kCafe, "BF16", {3}, bytes(6, 'p')},
};
const std::vector<RawTensor> kSecondTensors = {
    {"layers.1.proj.weight", "F8_E4M3", {2, 4}, bytes(8, 'A')},
    {"layers.1.proj.weight_scale_inv", "F32", {1, 1}, bytes(4, 'K')},
    {"lm_head.weight", "BF16", {2, 2}, bytes(8, 'P')},
};

// Two files and an index whose weight_map is not in name order (the rewrite keeps its order).
void make_checkpoint(const TempDir& dir, bool with_index = true) {
  write_file(dir / kFirst, build_safetensors(kFirstTensors));
  write_file(dir / kSecond, build_safetensors(kSecondTensors));
  if (!with_index) return;
  write_file(dir / kIndex,
             "{\"metadata\": {\"total_size\": 38}, \"weight_map\": {"
             "\"lm_head.weight\": \"" +
                 kSecond +
                 "\", "
                 "\"layers.1.proj.weight\": \"" +
                 kSecond +
                 "\", "
                 "\"layers.0.proj.weight\": \"" +
                 kFirst +
                 "\", "
                 "\"layers.0.proj.weight_scale_inv\": \"" +
                 kFirst +
                 "\", "
                 "\"caf\\u00e9.norm\": \"" +
                 kFirst +
                 "\", "
                 "\"layers.1.proj.weight_scale_inv\": \"" +
                 kSecond + "\"}}");
}

// The index the mirror-keep rules write: the input's entries in its order (nothing consumed: the
// skipped scales stay listed, as fp8_cast_bf16.py leaves scales it did not use), `metadata` empty.
const std::string kExpectedIndex =
    "{\n"
    "  \"metadata\": {},\n"
    "  \"weight_map\": {\n"
    "    \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
    "    \"layers.1.proj.weight\": \"model-00002-of-00002.safetensors\",\n"
    "    \"layers.0.proj.weight\": \"model-00001-of-00002.safetensors\",\n"
    "    \"layers.0.proj.weight_scale_inv\": \"model-00001-of-00002.safetensors\",\n"
    "    \"caf\\u00e9.norm\": \"model-00001-of-00002.safetensors\",\n"
    "    \"layers.1.proj.weight_scale_inv\": \"model-00002-of-00002.safetensors\"\n"
    "  }\n"
    "}";

std::string rules(const std::string& name) { return source_dir() + "/tests/data/rules/" + name + ".yaml"; }

std::set<std::string> listing(const fs::path& folder) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) names.insert(entry.path().filename().string());
  return names;
}

// The output file holds exactly its input's tensors minus the scales, each byte for byte.
void check_mirrored(const fs::path& out, const std::string& file, const std::vector<RawTensor>& input) {
  const auto written = parse_safetensors(read_file(out / file));
  std::size_t expected = 0;
  for (const RawTensor& t : input) {
    if (t.name.find("_scale_inv") != std::string::npos) {
      CHECK(written.count(t.name) == 0);
      continue;
    }
    ++expected;
    CAPTURE(file, t.name);
    REQUIRE(written.count(t.name) == 1);
    CHECK(written.at(t.name).dtype == t.dtype);
    CHECK(written.at(t.name).shape == t.shape);
    CHECK(written.at(t.name).bytes == t.bytes);
  }
  CHECK(written.size() == expected);
}

}  // namespace

TEST_CASE("mirror: the plan names one output per input file and the rewritten index") {
  TempDir in;
  make_checkpoint(in);
  const auto text = run_shardwise({"plan", "-i", in.str(), "--rules", rules("mirror-keep")});
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(text.out, Catch::Contains("-> 2 files mirroring the input's"));
  CHECK_THAT(text.out, Catch::Contains("side files: model.safetensors.index.json (rewritten)"));
  const auto json =
      run_shardwise({"plan", "-i", in.str(), "--rules", rules("mirror-keep"), "--format", "json"});
  REQUIRE(json.exit_code == 0);
  const auto doc = nlohmann::json::parse(json.out);
  CHECK(doc["output_naming"] == "mirror");
  CHECK(doc["model_parallel"] == 2);
  REQUIRE(doc["outputs"].size() == 2);
  CHECK(doc["outputs"][0]["file"] == kFirst);
  CHECK(doc["outputs"][1]["file"] == kSecond);
  CHECK(doc["generated_files"][0]["file"] == kIndex);
  CHECK(doc["generated_files"][0]["bytes"] == kExpectedIndex.size());
}

TEST_CASE(
    "mirror: convert writes each input file's tensors under its name, the index as Python does, verify") {
  TempDir in, out;
  make_checkpoint(in);
  // The flags of fp8_cast_bf16.py work as aliases.
  const auto run = run_shardwise({"convert", "--input-fp8-hf-path", in.str(), "--output-bf16-hf-path",
                                  out.str(), "--rules", rules("mirror-keep"), "-q"});
  REQUIRE(run.exit_code == 0);
  CHECK(listing(out.path()) == std::set<std::string>{kFirst, kSecond, kIndex, "shardwise-manifest.json"});
  CHECK(read_file(out / kIndex) == kExpectedIndex);
  check_mirrored(out.path(), kFirst, kFirstTensors);
  check_mirrored(out.path(), kSecond, kSecondTensors);

  const auto verified =
      run_shardwise({"verify", "-i", in.str(), "-o", out.str(), "--rules", rules("mirror-keep"), "-q"});
  CHECK(verified.exit_code == 0);
  CHECK(run_shardwise({"verify", "-o", out.str(), "--manifest-only", "-q"}).exit_code == 0);

  // A changed index is found by both verifications.
  write_file(out / kIndex, kExpectedIndex + "\n");
  const auto damaged =
      run_shardwise({"verify", "-i", in.str(), "-o", out.str(), "--rules", rules("mirror-keep"), "-q"});
  CHECK(damaged.exit_code == 6);
  CHECK_THAT(damaged.out, Catch::Contains(kIndex));
  CHECK(run_shardwise({"verify", "-o", out.str(), "--manifest-only", "-q"}).exit_code == 6);
}

TEST_CASE("mirror: --ranks counts output files, the index goes with the first, --resume keeps them") {
  TempDir in, out;
  make_checkpoint(in);
  const auto second = run_shardwise(
      {"convert", "-i", in.str(), "-o", out.str(), "--rules", rules("mirror-keep"), "--ranks", "1", "-q"});
  REQUIRE(second.exit_code == 0);
  CHECK(fs::exists(out / kSecond));
  CHECK(!fs::exists(out / kFirst));
  CHECK(!fs::exists(out / kIndex));
  const auto first = run_shardwise(
      {"convert", "-i", in.str(), "-o", out.str(), "--rules", rules("mirror-keep"), "--ranks", "0", "-q"});
  REQUIRE(first.exit_code == 0);
  CHECK(read_file(out / kIndex) == kExpectedIndex);
  CHECK(run_shardwise({"verify", "-i", in.str(), "-o", out.str(), "--rules", rules("mirror-keep"), "-q"})
            .exit_code == 0);

  const auto resumed = run_shardwise(
      {"convert", "-i", in.str(), "-o", out.str(), "--rules", rules("mirror-keep"), "--resume"});
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Catch::Contains("kept 2 files an earlier run finished"));
  CHECK(read_file(out / kIndex) == kExpectedIndex);

  const auto beyond = run_shardwise(
      {"convert", "-i", in.str(), "-o", out.str(), "--rules", rules("mirror-keep"), "--ranks", "2", "-q"});
  CHECK(beyond.exit_code == 2);
  CHECK_THAT(beyond.err,
             Catch::Contains("rank 2 is out of range: the mirrored plan has 2 output files (ranks 0-1)"));
}

TEST_CASE("mirror: refusals") {
  TempDir in, out;
  make_checkpoint(in);
  const auto mp = run_shardwise({"plan", "-i", in.str(), "--rules", rules("mirror-keep"), "-m", "2"});
  CHECK(mp.exit_code == 2);
  CHECK_THAT(mp.err, Catch::Contains("rules mirror-keep mirror the input's files (one output file per input "
                                     "file): --model-parallel does not apply (given 2)"));

  const auto split = run_shardwise({"plan", "-i", in.str(), "--rules", rules("mirror-split")});
  CHECK(split.exit_code == 4);
  CHECK_THAT(split.err,
             Catch::Contains("layers.0.proj.weight: mirrored output keeps every tensor whole under its "
                             "own name, but it is split (out) by table[proj]"));

  TempDir bare;
  make_checkpoint(bare, false);
  const auto no_index =
      run_shardwise({"convert", "-i", bare.str(), "-o", out.str(), "--rules", rules("mirror-keep")});
  CHECK(no_index.exit_code == 4);
  CHECK_THAT(no_index.err,
             Catch::Contains("has no model.safetensors.index.json: mirrored output rewrites the "
                             "input's index"));
  CHECK(listing(out.path()).empty());
}
