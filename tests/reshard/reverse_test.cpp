// convert --reverse in-process: a checkpoint converted with rules whose every step can be undone,
// at mp 1, 2 and 4 (and resharded), then reversed, gives every input tensor back (name, dtype,
// shape, bytes); conversions that cannot be undone are refused naming the step, before anything
// is written; a damaged piece stops the file that reads it.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>

#include <fmt/format.h>

#include <shardwise/convert/converter.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/reshard/reshard.hpp>
#include <shardwise/reshard/reverse.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/safetensors/hf_shards.hpp>

#include "convert/fixture.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

rules::Rules load(const std::string& name) {
  return rules::Rules::load_text(read_file(source_dir() + "/tests/data/rules/" + name), name);
}

// The input: renamed, split both ways, owned, replicated, reinterpreted, permuted, in two files.
const std::vector<RawTensor>& first_file() {
  static const std::vector<RawTensor> tensors = {
      {"model.embed.weight", "BF16", {8, 6}, pattern_bytes(96, 1)},
      {"model.layers.0.self_attn.q_proj.weight", "BF16", {16, 6}, pattern_bytes(192, 2)},
      {"model.layers.0.self_attn.o_proj.weight", "F32", {6, 16}, pattern_bytes(384, 3)},
      {"model.layers.0.norm.weight", "F16", {6}, pattern_bytes(12, 4)},
  };
  return tensors;
}
const std::vector<RawTensor>& second_file() {
  static const std::vector<RawTensor> tensors = {
      {"model.layers.0.items.0.packed.weight", "I8", {4, 3}, pattern_bytes(12, 5)},
      {"model.layers.0.items.1.packed.weight", "I8", {4, 3}, pattern_bytes(12, 6)},
      {"model.layers.0.items.2.packed.weight", "I8", {4, 3}, pattern_bytes(12, 7)},
      {"model.layers.0.items.3.packed.weight", "I8", {4, 3}, pattern_bytes(12, 8)},
      {"model.layers.10.scalar.weight", "F32", {}, pattern_bytes(4, 9)},
  };
  return tensors;
}

std::map<std::string, ParsedTensor> every_tensor(const fs::path& folder) {
  std::map<std::string, ParsedTensor> all;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() != ".safetensors") continue;
    for (auto& [name, t] : parse_safetensors(read_file(entry.path()))) REQUIRE(all.emplace(name, t).second);
  }
  return all;
}

void convert(const fs::path& in, const fs::path& out, const rules::Rules& rules, std::uint64_t mp) {
  const plan::Plan plan = plan::plan_checkpoint(st::Checkpoint::open(in.string()), rules, {mp, {}});
  convert::ConvertOptions options;
  options.run.output_dir = out.string();
  options.run.progress = output::ProgressMode::quiet;
  options.rules = {rules.name(), output::xxh3(rules.text()), rules.output_file_pattern(), rules.text()};
  convert::convert_plan(plan, options);
}

struct Fixture {
  TempDir dir;
  fs::path in = dir / "in";
  Fixture() {
    fs::create_directories(in);
    write_file(in / "model-00001-of-00002.safetensors", build_safetensors(first_file()));
    write_file(in / "model-00002-of-00002.safetensors", build_safetensors(second_file()));
    write_file(in / "tokenizer.json", "{\"tokens\": 3}");
  }
  std::map<std::string, ParsedTensor> input() const { return every_tensor(in); }
};

void require_same_tensors(const std::map<std::string, ParsedTensor>& expected,
                          const std::map<std::string, ParsedTensor>& actual) {
  REQUIRE(actual.size() == expected.size());
  for (const auto& [name, t] : expected) {
    INFO(name);
    const auto found = actual.find(name);
    REQUIRE(found != actual.end());
    CHECK(found->second.dtype == t.dtype);
    CHECK(found->second.shape == t.shape);
    CHECK(found->second.bytes == t.bytes);
  }
}

TEST_CASE("reverse: convert at mp 1, 2, 4, then reverse, gives every input tensor back byte for byte") {
  Fixture f;
  const rules::Rules rules = load("reversible.yaml");
  for (const std::uint64_t mp : {1, 2, 4}) {
    CAPTURE(mp);
    const fs::path converted = f.dir / fmt::format("mp{}", mp);
    convert(f.in, converted, rules, mp);
    // The conversion did change things: renamed, permuted and reinterpreted tensors.
    const auto written = parse_safetensors(read_file(converted / fmt::format("rank0-of-{}.safetensors", mp)));
    CHECK(written.count("layers.0.attn.wq.weight") == 1);
    CHECK(written.count("model.layers.0.self_attn.q_proj.weight") == 0);

    const reshard::ReversePlan plan =
        reshard::plan_reverse(converted.string(), st::kDefaultMaxShardSize, OutsideLinks::refuse);
    const fs::path back = f.dir / fmt::format("back{}", mp);
    const reshard::ReverseSummary summary = reshard::execute_reverse(plan, {.output_dir = back.string()});
    CHECK(summary.files == 1);
    CHECK(summary.tensors == 9);
    CHECK(fs::exists(back / "model.safetensors"));
    CHECK(!fs::exists(back / "model.safetensors.index.json"));
    require_same_tensors(f.input(), every_tensor(back));
    CHECK(read_file(back / "tokenizer.json") == read_file(f.in / "tokenizer.json"));
  }
}

TEST_CASE("reverse: a resharded folder reverses too, into shards of a given size with an index") {
  Fixture f;
  const rules::Rules rules = load("reversible.yaml");
  convert(f.in, f.dir / "mp4", rules, 4);
  reshard::ReshardOptions options;
  options.run.output_dir = (f.dir / "mp2").string();
  options.run.progress = output::ProgressMode::quiet;
  reshard::execute_reshard(reshard::plan_reshard((f.dir / "mp4").string(), 2), options);
  // 200-byte shards: the tensors in natural name order, a new file whenever one would pass 200 bytes.
  const reshard::ReversePlan plan =
      reshard::plan_reverse((f.dir / "mp2").string(), 200, OutsideLinks::refuse);
  REQUIRE(plan.files.size() > 1);
  reshard::execute_reverse(plan, {.output_dir = (f.dir / "back").string()});
  require_same_tensors(f.input(), every_tensor(f.dir / "back"));
  const std::string index = read_file(f.dir / "back" / "model.safetensors.index.json");
  CHECK_THAT(index, Catch::Contains("\"model.layers.0.self_attn.q_proj.weight\": \"model-0000"));
  // The natural order: layers.0 before layers.10, whatever their files.
  std::vector<std::string> order;
  for (const reshard::ReversedTensor& t : plan.tensors) order.push_back(t.name);
  CHECK(order.back() == "model.layers.10.scalar.weight");
  CHECK(order.front() == "model.embed.weight");
}

TEST_CASE("reverse: a conversion that skipped or rounded is refused, naming each rule, nothing written") {
  TempDir dir;
  fs::create_directories(dir / "in");
  write_file(dir / "in" / "model.safetensors",
             build_safetensors({{"rope.freqs", "F32", {4}, pattern_bytes(16, 1)},
                                {"layers.0.wq.weight", "BF16", {4, 4}, pattern_bytes(32, 2)},
                                {"layers.0.wq.scales", "F32", {4}, pattern_bytes(16, 3)},
                                {"layers.1.wq.weight", "BF16", {4, 4}, pattern_bytes(32, 4)},
                                {"layers.1.wq.scales", "F32", {4}, pattern_bytes(16, 5)}}));
  convert(dir / "in", dir / "out", load("irreversible.yaml"), 1);
  try {
    reshard::plan_reverse((dir / "out").string(), st::kDefaultMaxShardSize, OutsideLinks::refuse);
    FAIL("reversed a conversion that dropped and rounded tensors");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("cannot reverse") && Catch::Contains("(2 problems)"));
    CHECK_THAT(what, Catch::Contains("1 tensor dropped by skip: no-rope-freqs (irreversible.yaml:") &&
                         Catch::Contains("(the first: rope.freqs)"));
    CHECK_THAT(what, Catch::Contains("2 tensors made by cast F32 -> BF16 (rounds)") &&
                         Catch::Contains("(the first: layers.0.wq.scales)"));
  }
  CHECK(!fs::exists(dir / "back"));
}

TEST_CASE("reverse: a damaged piece stops the file that reads it, a folder without origins is refused") {
  Fixture f;
  const rules::Rules rules = load("reversible.yaml");
  convert(f.in, f.dir / "mp2", rules, 2);
  const reshard::ReversePlan plan =
      reshard::plan_reverse((f.dir / "mp2").string(), st::kDefaultMaxShardSize, OutsideLinks::refuse);
  std::string rank1 = read_file(f.dir / "mp2" / "rank1-of-2.safetensors");
  rank1[rank1.size() - 1] = static_cast<char>(rank1.back() ^ 0x40);  // the last tensor's last byte
  write_file(f.dir / "mp2" / "rank1-of-2.safetensors", rank1);
  CHECK_THROWS_WITH(reshard::execute_reverse(plan, {.output_dir = (f.dir / "back").string()}),
                    Catch::Contains("rank1-of-2.safetensors") && Catch::Contains("the manifest says"));
  CHECK(!fs::exists(f.dir / "back" / "model.safetensors"));

  // A manifest written before origins were recorded.
  convert(f.in, f.dir / "old", rules, 1);
  std::string manifest = read_file(f.dir / "old" / "shardwise-manifest.json");
  const auto at = manifest.find("\"origins\":true");
  REQUIRE(at != std::string::npos);
  manifest.replace(at, std::string("\"origins\":true").size(), "\"origins\":false");
  write_file(f.dir / "old" / "shardwise-manifest.json", manifest);
  CHECK_THROWS_WITH(
      reshard::plan_reverse((f.dir / "old").string(), st::kDefaultMaxShardSize, OutsideLinks::refuse),
      Catch::Contains("does not record what each tensor was made from"));
}

}  // namespace
}  // namespace shardwise::test
