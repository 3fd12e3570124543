// Hugging Face's layout as an output (rules `output: {layout: hf}`): the assignment of tensors to
// files as save_pretrained makes it, the files' names and metadata, the index, --mirror and
// --max-shard-size, and the side files the rules rewrite or drop. Expectations are written out by
// hand from huggingface_hub's algorithm (QUANT_FORMATS.md 4.1), not computed by the code under test.

#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>

#include "plan/hf_layout.hpp"
#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;

namespace {

const char* const kHfRules = R"(shardwise: 1
name: hf-test
output: {layout: hf, max_shard_size: 100}
unknown_keys: replicate
keys:
  - {name: any, match: '', key: tensor}
)";

// 120 + 40 + 20 + 40 + 20 = 240 bytes. Natural order: lm_head, layers.2, layers.9, layers.10, norm.
std::vector<TensorSpec> five_tensors() {
  return {{"lm_head.weight", st::DType::BF16, {60}},
          {"model.layers.10.w", st::DType::BF16, {20}},
          {"model.layers.2.w", st::DType::BF16, {20}},
          {"model.layers.9.w", st::DType::BF16, {10}},
          {"model.norm.weight", st::DType::F32, {5}}};
}

std::vector<std::string> names_of(const plan::OutputFile& out) {
  std::vector<std::string> names;
  for (const plan::PlannedTensor& t : out.tensors) names.push_back(t.name);
  return names;
}

plan::Plan plan_hf(const std::filesystem::path& dir, const std::string& rules_text,
                   plan::PlanOptions options) {
  const rules::Rules rules = rules::Rules::load_text(rules_text, "hf-test.yaml");
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.string());
  return plan::plan_checkpoint(checkpoint, rules, options);
}

}  // namespace

TEST_CASE("assign_hf_files: huggingface_hub's split in natural name order") {
  using Sizes = std::vector<std::pair<std::string_view, std::uint64_t>>;
  SECTION("QUANT_FORMATS.md's example: an oversized tensor alone, before the shard being filled") {
    // max 10: A 1, B 12, C 9, D 2 -> [B], [A, C], [D].
    const auto files = plan::detail::assign_hf_files(Sizes{{"A", 1}, {"B", 12}, {"C", 9}, {"D", 2}}, 10);
    CHECK(files.names == std::vector<std::string>{"model-00001-of-00003.safetensors",
                                                  "model-00002-of-00003.safetensors",
                                                  "model-00003-of-00003.safetensors"});
    CHECK(files.file_of == std::vector<std::size_t>{1, 0, 1, 2});
  }
  SECTION("a shard may hold exactly the maximum: one file, model.safetensors") {
    const auto files = plan::detail::assign_hf_files(Sizes{{"b", 6}, {"a", 4}}, 10);
    CHECK(files.names == std::vector<std::string>{"model.safetensors"});
    CHECK(files.file_of == std::vector<std::size_t>{0, 0});
  }
  SECTION("layers.2 and layers.9 before layers.10, whatever the order given") {
    // Bytewise order (10, 2, 9) would give [10, 2], [9].
    const auto files = plan::detail::assign_hf_files(Sizes{{"l.10.w", 6}, {"l.9.w", 6}, {"l.2.w", 6}}, 12);
    CHECK(files.file_of == std::vector<std::size_t>{1, 0, 0});
  }
  SECTION("no tensor: one empty model.safetensors") {
    const auto files = plan::detail::assign_hf_files(Sizes{}, 10);
    CHECK(files.names == std::vector<std::string>{"model.safetensors"});
    CHECK(files.file_of.empty());
  }
}

TEST_CASE("a plan in Hugging Face's layout: shards, metadata and index") {
  TempDir dir;
  write_checkpoint_file(dir / "model.safetensors", five_tensors());
  const plan::Plan plan = plan_hf(dir.path(), kHfRules, {1, {}});
  CHECK(plan.naming == plan::OutputNaming::hf);
  CHECK(plan.max_shard_size == 100);
  CHECK(plan.params.at("mp") == 1);
  REQUIRE(plan.outputs.size() == 3);
  CHECK(plan.model_parallel == 3);  // a "rank" is a file's position, as for mirrored output
  CHECK(plan.outputs[0].file == "model-00001-of-00003.safetensors");
  CHECK(names_of(plan.outputs[0]) == std::vector<std::string>{"lm_head.weight"});
  CHECK(plan.outputs[1].file == "model-00002-of-00003.safetensors");
  // Each file's tensors in name order, as every plan keeps them.
  CHECK(names_of(plan.outputs[1]) ==
        std::vector<std::string>{"model.layers.10.w", "model.layers.2.w", "model.layers.9.w"});
  CHECK(plan.outputs[1].bytes == 100);
  CHECK(names_of(plan.outputs[2]) == std::vector<std::string>{"model.norm.weight"});
  for (const plan::OutputFile& out : plan.outputs) {
    CHECK(out.rank == static_cast<std::uint64_t>(&out - plan.outputs.data()));
    CHECK(out.metadata == std::map<std::string, std::string>{{"format", "pt"}});
  }
  REQUIRE(plan.generated_files.size() == 1);
  CHECK(plan.generated_files[0].file == "model.safetensors.index.json");
  CHECK(plan.generated_files[0].from.empty());
  CHECK(plan.generated_files[0].content ==
        "{\n"
        "  \"metadata\": {\n"
        "    \"total_size\": 240\n"
        "  },\n"
        "  \"weight_map\": {\n"
        "    \"lm_head.weight\": \"model-00001-of-00003.safetensors\",\n"
        "    \"model.layers.10.w\": \"model-00002-of-00003.safetensors\",\n"
        "    \"model.layers.2.w\": \"model-00002-of-00003.safetensors\",\n"
        "    \"model.layers.9.w\": \"model-00002-of-00003.safetensors\",\n"
        "    \"model.norm.weight\": \"model-00003-of-00003.safetensors\"\n"
        "  }\n"
        "}\n");
  CHECK(plan::outputs_heading(plan) == "3 files in Hugging Face's layout (max shard size 100 bytes)");
}

TEST_CASE(
    "the option --max-shard-size replaces the rules' size, one shard is model.safetensors without an index") {
  TempDir dir;
  write_checkpoint_file(dir / "model.safetensors", five_tensors());
  plan::PlanOptions options{1, {}};
  options.max_shard_size = 240;
  const plan::Plan plan = plan_hf(dir.path(), kHfRules, options);
  REQUIRE(plan.outputs.size() == 1);
  CHECK(plan.outputs[0].file == "model.safetensors");
  CHECK(plan.outputs[0].tensors.size() == 5);
  CHECK(plan.generated_files.empty());
}

TEST_CASE(
    "the option --mirror: one file per input file under its name, the index only when the input has one") {
  TempDir dir;
  const std::vector<TensorSpec> all = five_tensors();
  write_checkpoint_file(dir / "a.safetensors", {all[0], all[1]});
  write_checkpoint_file(dir / "b.safetensors", {all[2], all[3], all[4]});
  plan::PlanOptions options{1, {}};
  options.mirror = true;
  {
    const plan::Plan plan = plan_hf(dir.path(), kHfRules, options);
    REQUIRE(plan.outputs.size() == 2);
    CHECK(plan.outputs[0].file == "a.safetensors");
    CHECK(names_of(plan.outputs[0]) == std::vector<std::string>{"lm_head.weight", "model.layers.10.w"});
    CHECK(plan.outputs[1].file == "b.safetensors");
    CHECK(plan.outputs[1].metadata == std::map<std::string, std::string>{{"format", "pt"}});
    CHECK(plan.generated_files.empty());
  }
  write_file(
      dir / "model.safetensors.index.json",
      R"({"metadata": {}, "weight_map": {"lm_head.weight": "a.safetensors", "model.layers.10.w": "a.safetensors",
                 "model.layers.2.w": "b.safetensors", "model.layers.9.w": "b.safetensors",
                 "model.norm.weight": "b.safetensors"}})");
  const plan::Plan plan = plan_hf(dir.path(), kHfRules, options);
  REQUIRE(plan.generated_files.size() == 1);
  CHECK(plan.generated_files[0].content.find("\"total_size\": 240") != std::string::npos);
  CHECK(plan.generated_files[0].content.find("\"model.norm.weight\": \"b.safetensors\"") !=
        std::string::npos);
}

TEST_CASE("Hugging Face's layout has no ranks, its options are refused for other rules") {
  TempDir dir;
  write_checkpoint_file(dir / "model.safetensors", five_tensors());
  const auto usage_error = [&](const std::string& rules_text, const plan::PlanOptions& options) {
    try {
      plan_hf(dir.path(), rules_text, options);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      return std::string(e.what());
    }
    FAIL("planned");
    return std::string();
  };
  CHECK_THAT(usage_error(kHfRules, {2, {}}),
             Catch::Contains(
                 "Hugging Face's layout, which has no ranks: --model-parallel does not apply (given 2)"));
  plan::PlanOptions both{1, {}};
  both.mirror = true;
  both.max_shard_size = 10;
  CHECK_THAT(usage_error(kHfRules, both), Catch::Contains("exclude each other"));
  plan::PlanOptions size{1, {}};
  size.max_shard_size = 10;
  CHECK_THAT(usage_error(kPlanRules, size),
             Catch::Contains("--max-shard-size applies to rules whose output is Hugging Face's layout"));
  plan::PlanOptions mirror{1, {}};
  mirror.mirror = true;
  CHECK_THAT(usage_error(kPlanRules, mirror), Catch::Contains("--mirror applies to rules"));
}

TEST_CASE(
    "side files: config.json without its quantisation, a quantiser's config dropped, patterns skip tensor "
    "files") {
  const char* const rules_text = R"(shardwise: 1
name: hf-dequant-test
output: {layout: hf}
side_files: ['*', {config.json: dequantized}, {quantize_config.json: drop}]
unknown_keys: replicate
skip:
  - {name: scales, match: '_scale_inv$', reason: consumed by the dequantisation}
keys:
  - {name: any, match: '', key: tensor}
transforms:
  - name: fp8
    match: '\.weight$'
    dequantize: {scale: '{name}_scale_inv', lookup: input, block: [128, 128], to: BF16, nan: canonical, dtype: [F8_E4M3]}
)";
  TempDir dir;
  write_checkpoint_file(dir / "model.safetensors", {{"a.weight", st::DType::F8_E4M3, {128, 256}},
                                                    {"a.weight_scale_inv", st::DType::F32, {1, 2}},
                                                    {"norm.weight", st::DType::BF16, {128}}});
  write_file(dir / "config.json",
             R"({"torch_dtype": "float8", "quantization_config": {"quant_method": "fp8"}, "hidden": 128})");
  write_file(dir / "quantize_config.json", "{}");
  write_file(dir / "tokenizer.json", "{}");
  const plan::Plan plan = plan_hf(dir.path(), rules_text, {1, {}});
  CHECK(plan.max_shard_size == 5'000'000'000);  // transformers' default
  CHECK(plan.side_files == std::vector<std::string>{"tokenizer.json"});
  CHECK(plan.dropped_side_files == std::vector<std::string>{"quantize_config.json"});
  REQUIRE(plan.generated_files.size() == 1);
  CHECK(plan.generated_files[0].file == "config.json");
  CHECK(plan.generated_files[0].from == "config.json");
  CHECK(plan.generated_files[0].content == "{\n  \"hidden\": 128,\n  \"torch_dtype\": \"bfloat16\"\n}\n");
  CHECK(plan::extra_files_text(plan) ==
        "tokenizer.json, config.json (without its quantisation, dtype bfloat16), quantize_config.json (not "
        "copied)");

  // Nothing dequantised: the rewritten config would lie about the weights.
  TempDir plain;
  write_checkpoint_file(plain / "model.safetensors", {{"norm.weight", st::DType::BF16, {128}}});
  write_file(plain / "config.json", "{}");
  try {
    plan_hf(plain.path(), rules_text, {1, {}});
    FAIL("planned");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    CHECK_THAT(std::string(e.what()),
               Catch::Contains("config.json: the rules write it without its quantisation "
                               "({config.json: dequantized}), but the plan dequantises no tensor"));
  }
}
