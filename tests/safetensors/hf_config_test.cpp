// config.json after dequantisation, against texts written by Python by hand:
// c = json.loads(text); del c["quantization_config"]; c["torch_dtype"] = "bfloat16";
// json.dumps(c, indent=2, sort_keys=True) + "\n".

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/hf_config.hpp>

#include <string>

#include <catch2/catch.hpp>

using namespace shardwise;
using namespace shardwise::st;

TEST_CASE("dequantized_config_json: quantization removed, dtype set, Python's layout") {
  const std::string input =
      R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "rope_theta": 10000.0, "rms_norm_eps": 1e-06,
 "max_position_embeddings": 131072, "initializer_range": 0.02, "torch_dtype": "float16",
 "quantization_config": {"bits": 4, "group_size": 128, "quant_method": "gptq", "desc_act": false},
 "rope_scaling": {"factor": 8.0, "type": "yarn", "beta_fast": 32}, "tie_word_embeddings": false, "bos_token_id": 0,
 "eos_token_id": [1, 2], "attention_bias": null, "name": "café 😀", "big": 1e16, "small": 0.0001, "tiny": 1.5e-05,
 "neg": -0.0, "empty": {}, "empty_list": [], "int_big": 18446744073709551615, "neg_int": -5,
 "float_big": 123456789012345.6, "x": 1e+100, "y": 5e-324, "z": 1.7976931348623157e308, "ZZ": 2.5, "_a": 3})";
  const std::string want =
      "{\n  \"ZZ\": 2.5,\n  \"_a\": 3,\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n  "
      "\"attention_bias\": "
      "null,\n  \"big\": 1e+16,\n  \"bos_token_id\": 0,\n  \"empty\": {},\n  \"empty_list\": [],\n  "
      "\"eos_token_id\": [\n "
      "   1,\n    2\n  ],\n  \"float_big\": 123456789012345.6,\n  \"initializer_range\": 0.02,\n  "
      "\"int_big\": "
      "18446744073709551615,\n  \"max_position_embeddings\": 131072,\n  \"name\": \"caf\\u00e9 "
      "\\ud83d\\ude00\",\n  "
      "\"neg\": -0.0,\n  \"neg_int\": -5,\n  \"rms_norm_eps\": 1e-06,\n  \"rope_scaling\": {\n    "
      "\"beta_fast\": 32,\n    "
      "\"factor\": 8.0,\n    \"type\": \"yarn\"\n  },\n  \"rope_theta\": 10000.0,\n  \"small\": 0.0001,\n  "
      "\"tie_word_embeddings\": false,\n  \"tiny\": 1.5e-05,\n  \"torch_dtype\": \"bfloat16\",\n  "
      "\"vocab_size\": "
      "32000,\n  \"x\": 1e+100,\n  \"y\": 5e-324,\n  \"z\": 1.7976931348623157e+308\n}\n";
  CHECK(dequantized_config_json(input, DType::BF16, "config.json") == want);
}

TEST_CASE("dequantized_config_json: which dtype key is set") {
  struct Case {
    const char* input;
    DType dtype;
    const char* want;
  };
  const Case cases[] = {
      {R"({"a": 1})", DType::BF16, "{\n  \"a\": 1,\n  \"torch_dtype\": \"bfloat16\"\n}\n"},
      {R"({"dtype": "float32", "quantization_config": {}})", DType::F16, "{\n  \"dtype\": \"float16\"\n}\n"},
      {R"({"dtype": "bfloat16", "torch_dtype": "bfloat16"})", DType::F16,
       "{\n  \"dtype\": \"float16\",\n  \"torch_dtype\": \"float16\"\n}\n"},
      {R"({"compression_config": {"format": "float-quantized"}, "torch_dtype": "bfloat16"})", DType::BF16,
       "{\n  \"torch_dtype\": \"bfloat16\"\n}\n"},
  };
  for (const Case& c : cases) {
    INFO(c.input);
    CHECK(dequantized_config_json(c.input, c.dtype, "config.json") == c.want);
  }
}

TEST_CASE("dequantized_config_json: what is not a JSON object is refused, naming the file") {
  CHECK_THROWS_WITH(dequantized_config_json("[1]", DType::BF16, "in/config.json"),
                    "in/config.json: not a JSON object");
  CHECK_THROWS_WITH(dequantized_config_json(R"({"a": NaN})", DType::BF16, "in/config.json"),
                    Catch::StartsWith("in/config.json: not valid JSON: "));
  CHECK_THROWS_WITH(dequantized_config_json("{}", DType::F32, "in/config.json"),
                    "in/config.json: dtype F32 is neither BF16 nor F16");
}

TEST_CASE("python_float_repr: repr() of floats") {
  struct Case {
    double value;
    const char* want;
  };
  // Python: repr(v) for each v.
  const Case cases[] = {
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {1.0, "1.0"},
      {0.1, "0.1"},
      {0.02, "0.02"},
      {1e-06, "1e-06"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {0.001, "0.001"},
      {123.456, "123.456"},
      {1e15, "1000000000000000.0"},
      {1e16, "1e+16"},
      {9999999999999998.0, "9999999999999998.0"},
      {1.5e16, "1.5e+16"},
      {1e22, "1e+22"},
      {1e-07, "1e-07"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {2.5e-05, "2.5e-05"},
      {100.0, "100.0"},
      {3.14159, "3.14159"},
      {-2.5e-10, "-2.5e-10"},
      {12345678901234567.0, "1.2345678901234568e+16"},
      {0.3, "0.3"},
      {1e100, "1e+100"},
  };
  for (const Case& c : cases) {
    INFO(c.want);
    CHECK(python_float_repr(c.value) == c.want);
  }
}
