// Hugging Face's sharding of a saved checkpoint: max_shard_size parsed as huggingface_hub parses
// it, tensors assigned to files as split_state_dict_into_shards assigns them, the files' names,
// natural name order and the index as transformers writes it. Expected values were produced by
// hand with Python (int(float(n) * 10**k), json.dumps(..., indent=2, sort_keys=True) + "\n").

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/hf_shards.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

using namespace shardwise;
using namespace shardwise::st;

TEST_CASE("parse_max_shard_size: numbers and units as huggingface_hub reads them") {
  struct Case {
    const char* text;
    std::uint64_t bytes;
  };
  const Case cases[] = {
      {"5GB", 5'000'000'000}, {"500MB", 500'000'000},   {"0.3MB", 300'000},    {"1.5 gb", 1'500'000'000},
      {" 7 KB ", 7'000},      {"1e3MB", 1'000'000'000}, {".5GB", 500'000'000}, {"3TB", 3'000'000'000'000},
      {"1000", 1000},         {"5.GB", 5'000'000'000},  {"1.005KB", 1004},     {"+2mb", 2'000'000},
      {"4.35MB", 4'350'000},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    CHECK(parse_max_shard_size(c.text) == c.bytes);
  }
  struct Bad {
    const char* text;
    const char* message;
  };
  const Bad bad[] = {
      {"5GiB",
       "max shard size '5GiB': binary units are not accepted (huggingface_hub takes TB, GB, MB or KB, powers "
       "of ten); give the number of bytes instead"},
      {"5G",
       "max shard size '5G': give a number of bytes, or a number with TB, GB, MB or KB (powers of ten)"},
      {"", "max shard size '': give a number of bytes, or a number with TB, GB, MB or KB (powers of ten)"},
      {"GB", "max shard size 'GB': '' is not a number"},
      {"5 5GB", "max shard size '5 5GB': '5 5' is not a number"},
      {"infGB", "max shard size 'infGB': 'inf' is not a number"},
      {"0", "max shard size '0': a shard must be allowed at least one byte"},
      {"-1GB", "max shard size '-1GB': a shard must be allowed at least one byte"},
      {"0.0000001KB", "max shard size '0.0000001KB': a shard must be allowed at least one byte"},
      {"99999999999999999999", "max shard size '99999999999999999999': more than 2^64 bytes"},
      {"1e10TB", "max shard size '1e10TB': more than 2^64 bytes"},
  };
  for (const Bad& b : bad) {
    INFO(b.text);
    try {
      parse_max_shard_size(b.text);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      CHECK(std::string(e.what()) == b.message);
    }
  }
}

TEST_CASE("split_into_shards: huggingface_hub's greedy assignment") {
  using Shards = std::vector<std::vector<std::size_t>>;
  struct Case {
    std::vector<std::uint64_t> sizes;
    std::uint64_t max;
    Shards want;
  };
  const Case cases[] = {
      // QUANT_FORMATS.md's example: A 1, B 12, C 9, D 2 with max 10 -> [B], [A, C], [D].
      {{1, 12, 9, 2}, 10, {{1}, {0, 2}, {3}}},
      {{5, 5, 5}, 10, {{0, 1}, {2}}},  // a shard may hold exactly max
      {{4, 4, 4}, 100, {{0, 1, 2}}},   // one shard
      {{11, 12}, 10, {{0}, {1}}},      // all oversized
      {{3, 11, 12, 4}, 10, {{1}, {2}, {0, 3}}},
      {{10, 1, 10}, 10, {{0}, {1}, {2}}},
      {{}, 10, {}},
      {{0, 0, 10, 0}, 10, {{0, 1, 2, 3}}},
  };
  for (const Case& c : cases) CHECK(split_into_shards(c.sizes, c.max) == c.want);
}

TEST_CASE("hf_shard_file_names: model.safetensors alone, else model-0000K-of-0000N") {
  CHECK(hf_shard_file_names(1) == std::vector<std::string>{"model.safetensors"});
  CHECK(hf_shard_file_names(3) == std::vector<std::string>{"model-00001-of-00003.safetensors",
                                                           "model-00002-of-00003.safetensors",
                                                           "model-00003-of-00003.safetensors"});
  CHECK(hf_shard_file_names(123456).back() == "model-123456-of-123456.safetensors");
}

TEST_CASE("natural_name_less: digit runs by value, then the shorter, text bytewise") {
  // Python: sorted(names, key=natural_key) of quant_ref.py.
  const std::vector<std::string> sorted = {"",
                                           "0",
                                           "00",
                                           "7",
                                           "007",
                                           "Z9",
                                           "a",
                                           "a1",
                                           "a1b",
                                           "a01b",
                                           "a10",
                                           "ab",
                                           "b",
                                           "lm_head.weight",
                                           "model.embed_tokens.weight",
                                           "model.layers.2",
                                           "model.layers.2.",
                                           "model.layers.2.mlp.down_proj.bias",
                                           "model.layers.2.mlp.down_proj.weight",
                                           "model.layers.2.mlp.experts.9.w1",
                                           "model.layers.2.mlp.experts.10.w1",
                                           "model.layers.02.x",
                                           "model.layers.10.mlp.down_proj.weight",
                                           "model.norm.weight",
                                           "z",
                                           "\xc3\xa9"};
  std::vector<std::string> names = sorted;
  std::reverse(names.begin(), names.end());
  std::stable_sort(names.begin(), names.end(), natural_name_less);
  CHECK(names == sorted);
  for (const std::string& name : sorted) CHECK_FALSE(natural_name_less(name, name));
}

TEST_CASE("hf_index_json: transformers' index, sorted, indented, escaped, newline-terminated") {
  const std::string want =
      "{\n"
      "  \"metadata\": {\n"
      "    \"total_size\": 123456789012\n"
      "  },\n"
      "  \"weight_map\": {\n"
      "    \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
      "    \"model.layers.10.w\": \"model-00002-of-00002.safetensors\",\n"
      "    \"model.layers.2.w\": \"model-00001-of-00002.safetensors\",\n"
      "    \"model.\\u00e9\": \"model-00001-of-00002.safetensors\"\n"
      "  }\n"
      "}\n";
  CHECK(hf_index_json({{"model.layers.2.w", "model-00001-of-00002.safetensors"},
                       {"model.\xc3\xa9", "model-00001-of-00002.safetensors"},
                       {"model.layers.10.w", "model-00002-of-00002.safetensors"},
                       {"lm_head.weight", "model-00002-of-00002.safetensors"}},
                      123456789012) == want);
  CHECK(hf_index_json({}, 0) ==
        "{\n  \"metadata\": {\n    \"total_size\": 0\n  },\n  \"weight_map\": {}\n}\n");
  CHECK_THROWS_WITH(hf_index_json({{"a", "x"}, {"a", "y"}}, 1), "index: tensor a is listed twice");
  CHECK_THROWS_WITH(hf_index_json({{"a\xff", "x"}}, 1), Catch::Contains("tensor name"));
}
