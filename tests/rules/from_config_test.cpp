// Rules parameters read from the checkpoint's own files (`from_config:`): the syntax and its
// errors, resolution (flag > config > default, alternatives, nested keys, FILE:key, `map:`), every
// refusal with its exit code and words, and the bounds on config files from strangers.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>

#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::OutsideLinks;
using shardwise::rules::ConfigFiles;
using shardwise::rules::ConfigKey;
using shardwise::rules::Params;
using shardwise::rules::ParamSource;
using shardwise::rules::ResolvedParams;
using shardwise::rules::Rules;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

// The lead's example, as other rules files write it.
constexpr const char* kRules = R"(shardwise: 1
name: from-config
params:
  heads:    {from_config: num_attention_heads, help: query heads}
  kv_heads: {from_config: [num_key_value_heads, num_attention_heads]}
  n_heads:  {from_config: 'params.json:n_heads', default: 1}
  bits:     {from_config: quantization_config.bits, default: 4}
  format:   {from_config: [quantization_config.checkpoint_format, 'quantize_config.json:checkpoint_format'], choices: [gptq, gptq_v2], default: gptq}
  sym:      {from_config: quantization_config.sym, choices: [asym, sym], map: {true: sym, false: asym}, default: sym}
  plain:    {default: 7}
output: {file: "rank{rank}.safetensors"}
keys: [{match: '(?P<key>[a-z]+)$'}]
table: {w: {split: out}}
)";

Rules rules() { return Rules::load_text(kRules, "from-config.yaml"); }

ConfigFiles config(const std::string& config_json, std::map<std::string, std::string> others = {}) {
  others.emplace("config.json", config_json);
  return ConfigFiles::texts(std::move(others));
}

// The error resolve_params throws, checked for its kind.
std::string error_of(const Rules& r, const Params& given, const ConfigFiles& files, ErrorKind kind) {
  try {
    r.resolve_params(given, files);
  } catch (const Error& e) {
    CHECK(e.kind() == kind);
    return e.what();
  }
  FAIL("resolved");
  return {};
}

std::string source_of(const ResolvedParams& resolved, const std::string& name) {
  return resolved.sources.at(name).text(name);
}

std::string load_error(const std::string& params) {
  const std::string text =
      fmt::format("shardwise: 1\nname: x\nparams:\n{}output: {{file: \"r{{rank}}.safetensors\"}}\n", params);
  try {
    Rules::load_text(text, "x.yaml");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    return e.what();
  }
  FAIL("loaded");
  return {};
}

}  // namespace

TEST_CASE("from_config: the keys are read with the file, alternatives in order") {
  const Rules r = rules();
  const auto& params = r.params();
  REQUIRE(params.size() == 7);
  CHECK(params[0].from_config == std::vector<ConfigKey>{{"config.json", {"num_attention_heads"}}});
  CHECK(params[1].from_config == std::vector<ConfigKey>{{"config.json", {"num_key_value_heads"}},
                                                        {"config.json", {"num_attention_heads"}}});
  CHECK(params[2].from_config == std::vector<ConfigKey>{{"params.json", {"n_heads"}}});
  CHECK(params[3].from_config == std::vector<ConfigKey>{{"config.json", {"quantization_config", "bits"}}});
  CHECK(params[4].from_config[1].text() == "quantize_config.json: checkpoint_format");
  REQUIRE(params[5].config_map.size() == 2);
  CHECK(params[5].config_map[0].from == "true");
  CHECK(params[5].config_map[0].to == 1);
  CHECK(params[6].from_config.empty());
  CHECK(shardwise::rules::param_default_text(params[0]) ==
        "default: from config.json num_attention_heads, else required");
  CHECK(shardwise::rules::param_default_text(params[1]) ==
        "default: from config.json num_key_value_heads or config.json num_attention_heads, else required");
  CHECK(shardwise::rules::param_default_text(params[4]) ==
        "default: from config.json quantization_config.checkpoint_format or quantize_config.json "
        "checkpoint_format, else gptq");
  CHECK(shardwise::rules::param_default_text(params[6]) == "default: 7");
  CHECK(r.summary().find(
            "--heads N (default: from config.json num_attention_heads, else required): query heads") !=
        std::string::npos);
}

TEST_CASE("from_config: a bad key, file or map is a rules error at its place") {
  CHECK(load_error("  a: {from_config: 'sub/config.json:x'}\n")
            .find("x.yaml:4:20: from_config of parameter 'a': the file of 'sub/config.json:x' is a path, not "
                  "a file name: it must be a plain file name of the input folder") != std::string::npos);
  CHECK(load_error("  a: {from_config: '..:x'}\n").find("the file of '..:x' is '..', a folder") !=
        std::string::npos);
  CHECK(load_error("  a: {from_config: 'a..b'}\n").find("key 'a..b' has an empty component") !=
        std::string::npos);
  CHECK(load_error("  a: {from_config: [x, x]}\n").find("lists config.json: x twice") != std::string::npos);
  CHECK(load_error("  a: {from_config: []}\n").find("from_config of parameter 'a' is an empty list") !=
        std::string::npos);
  CHECK(load_error("  a: {map: {null: 1}}\n").find("it needs from_config") != std::string::npos);
  CHECK(load_error("  a: {from_config: x, choices: [p, q], map: {null: r}}\n")
            .find("the map of parameter 'a': --a r: expected one of p, q") != std::string::npos);
  CHECK(load_error("  a: {from_config: x, map: {-1: many}}\n")
            .find("the map of parameter 'a': --a 'many': expected a non-negative integer") !=
        std::string::npos);
  CHECK(load_error("  a: {from_config: x, fromconfig: y}\n").find("did you mean 'from_config'") !=
        std::string::npos);
}

TEST_CASE("resolve_params: flag > config > default, and where each value came from") {
  const Rules r = rules();
  const ResolvedParams resolved = r.resolve_params(
      {{"mp", 2}, {"kv_heads", 8}},
      config(
          R"({"num_attention_heads": 32, "num_key_value_heads": 8, "quantization_config": {"bits": 8, "sym": false}})",
          {{"quantize_config.json", R"({"checkpoint_format": "gptq_v2"})"}}));
  CHECK(resolved.values == Params{{"mp", 2},
                                  {"heads", 32},
                                  {"kv_heads", 8},
                                  {"n_heads", 1},
                                  {"bits", 8},
                                  {"format", 1},
                                  {"sym", 0},
                                  {"plain", 7}});
  CHECK(source_of(resolved, "heads") == "config.json: num_attention_heads");
  CHECK(source_of(resolved, "kv_heads") == "--kv-heads");  // given, and equal to the config's
  CHECK(source_of(resolved, "n_heads") == "default");      // no params.json
  CHECK(source_of(resolved, "bits") == "config.json: quantization_config.bits");
  CHECK(source_of(resolved, "format") == "quantize_config.json: checkpoint_format");  // the second key
  CHECK(source_of(resolved, "sym") == "config.json: quantization_config.sym");        // false mapped
  CHECK(source_of(resolved, "plain") == "default");
  CHECK(resolved.sources.count("mp") == 0);
  CHECK(shardwise::rules::describe_param_source("heads", "32", resolved.sources.at("heads")) ==
        "heads = 32 (config.json: num_attention_heads)");
}

TEST_CASE("resolve_params: the first key present wins, and a null, a missing key or object falls through") {
  const Rules r = rules();
  const auto kv = [&](const std::string& json) {
    const ResolvedParams resolved = r.resolve_params({}, config(json));
    return std::pair(resolved.values.at("kv_heads"), source_of(resolved, "kv_heads"));
  };
  CHECK(kv(R"({"num_attention_heads": 32, "num_key_value_heads": 4})") ==
        std::pair<std::uint64_t, std::string>(4, "config.json: num_key_value_heads"));
  CHECK(kv(R"({"num_attention_heads": 32})") ==
        std::pair<std::uint64_t, std::string>(32, "config.json: num_attention_heads"));
  CHECK(kv(R"({"num_attention_heads": 32, "num_key_value_heads": null})") ==
        std::pair<std::uint64_t, std::string>(32, "config.json: num_attention_heads"));
  const ResolvedParams nested =
      r.resolve_params({}, config(R"({"num_attention_heads": 1, "quantization_config": "none"})"));
  CHECK(nested.values.at("bits") == 4);
  CHECK(source_of(nested, "bits") == "default");
}

TEST_CASE("resolve_params: a flag that contradicts the checkpoint is a usage error naming both") {
  const Rules r = rules();
  const ConfigFiles files =
      config(R"({"num_attention_heads": 32, "quantization_config": {"checkpoint_format": "gptq"}})");
  CHECK(
      error_of(r, {{"heads", 16}}, files, ErrorKind::usage) ==
      "--heads 16 contradicts the checkpoint: config.json: num_attention_heads is 32 (leave --heads out, or "
      "give the same value)");
  CHECK(error_of(r, {{"format", 1}}, files, ErrorKind::usage) ==
        "--format gptq_v2 contradicts the checkpoint: config.json: quantization_config.checkpoint_format is "
        "\"gptq\" (leave --format out, or give the same value)");
  CHECK(r.resolve_params({{"heads", 32}, {"format", 0}}, files).values.at("heads") == 32);
}

TEST_CASE("resolve_params: a config value the parameter does not take is an input error naming it") {
  const Rules r = rules();
  const auto bad = [&](const std::string& json) { return error_of(r, {}, config(json), ErrorKind::input); };
  const std::string from = "heads (from_config at from-config.yaml:4:3)";
  // heads and kv_heads (its second key) both read it: each is named.
  CHECK(bad(R"({"num_attention_heads": 128.0})") ==
        "config.json: num_attention_heads is 128.0, not a non-negative integer for parameter " + from +
            "\nconfig.json: num_attention_heads is 128.0, not a non-negative integer for parameter kv_heads "
            "(from_config at from-config.yaml:5:3)");
  CHECK(bad(R"({"num_attention_heads": -1})")
            .starts_with("config.json: num_attention_heads is -1, not a non-negative integer for parameter " +
                         from));
  CHECK(bad(R"({"num_attention_heads": true})").find("is true, not a non-negative integer") !=
        std::string::npos);
  CHECK(bad(R"({"num_attention_heads": "32"})").find("is \"32\", not a non-negative integer") !=
        std::string::npos);
  CHECK(bad(R"({"num_attention_heads": 18446744073709551616})").find("not a non-negative integer") !=
        std::string::npos);
  CHECK(
      bad(R"({"num_attention_heads": 8, "quantization_config": {"checkpoint_format": "marlin"}})") ==
      "config.json: quantization_config.checkpoint_format is \"marlin\", not one of the choices of parameter "
      "format (from_config at from-config.yaml:8:3): gptq, gptq_v2");
  CHECK(bad(R"({"num_attention_heads": 8, "quantization_config": {"sym": "yes"}})")
            .find("quantization_config.sym is \"yes\", not one of the choices") != std::string::npos);
  // Every bad value in one run, a flag or not.
  const std::string both = error_of(
      r, {{"heads", 3}}, config(R"({"num_attention_heads": 1.5, "quantization_config": {"bits": "4"}})"),
      ErrorKind::input);
  CHECK(both.find("num_attention_heads is 1.5") != std::string::npos);
  CHECK(both.find("quantization_config.bits is \"4\"") != std::string::npos);
}

TEST_CASE("resolve_params: a parameter nothing gives says which files and keys were looked at") {
  const Rules r = rules();
  CHECK(
      error_of(r, {}, config(R"({"vocab_size": 10})"), ErrorKind::usage) ==
      "--heads is required: query heads (parameter heads of from-config.yaml:4:3 has no default and the "
      "checkpoint does not give it (config.json has no num_attention_heads); --param heads=N is the same)\n"
      "--kv-heads is required: a rules parameter (parameter kv_heads of from-config.yaml:5:3 has no default "
      "and the checkpoint does not give it (config.json has no num_key_value_heads; config.json has no "
      "num_attention_heads); --param kv_heads=N is the same)");
  CHECK(error_of(r, {{"kv_heads", 1}}, ConfigFiles(), ErrorKind::usage)
            .find("(no checkpoint folder was given)") != std::string::npos);
  CHECK(r.resolve_params({{"heads", 2}, {"kv_heads", 1}}).at("bits") == 4);  // no checkpoint: defaults
}

TEST_CASE("config files in a folder: read as side files are, bounded, and refused by name when bad") {
  const Rules r = rules();
  TempDir dir;
  const auto in_folder = [&](OutsideLinks links = OutsideLinks::refuse) {
    return ConfigFiles::folder(dir.str(), links);
  };
  write_file(dir / "config.json", R"({"num_attention_heads": 16, "quantization_config": {"bits": 2}})");
  write_file(dir / "params.json", R"({"n_heads": 12})");
  const ResolvedParams resolved = r.resolve_params({}, in_folder());
  CHECK(resolved.values.at("heads") == 16);
  CHECK(resolved.values.at("n_heads") == 12);
  CHECK(source_of(resolved, "n_heads") == "params.json: n_heads");

  const auto refused = [&](OutsideLinks links = OutsideLinks::refuse) {
    return error_of(r, {}, in_folder(links), ErrorKind::input);
  };
  write_file(dir / "config.json", "{\"num_attention_heads\": 16,");
  CHECK(refused().starts_with((dir / "config.json").string() + ": not valid JSON: "));
  write_file(dir / "config.json", "[16]");
  CHECK(refused() == (dir / "config.json").string() + ": not a JSON object");
  write_file(dir / "config.json", std::string(70, '[') + std::string(70, ']'));
  CHECK(refused() ==
        (dir / "config.json").string() + ": nested more than 64 levels deep: not a model's config");
  write_file(dir / "config.json", "{\"num_attention_heads\": 16, \"name\": \"\xff\"}");
  CHECK(refused().find("not valid JSON") != std::string::npos);
  {
    // Larger than the bound: refused from its size, before a byte is read.
    const fs::path big = dir / "config.json";
    fs::resize_file(big, shardwise::rules::kMaxConfigBytes + 1);
    CHECK(refused() == fmt::format("{}: {} bytes, more than the {} a config file may hold", big.string(),
                                   shardwise::rules::kMaxConfigBytes + 1, shardwise::rules::kMaxConfigBytes));
  }
  fs::remove(dir / "config.json");
  fs::create_directory(dir / "config.json");
  CHECK(refused().find("a folder, not a regular file") != std::string::npos);
  fs::remove(dir / "config.json");

  // A link that leads outside the folder: refused unless allowed, as side files are.
  TempDir outside;
  write_file(outside / "config.json", R"({"num_attention_heads": 16})");
  fs::create_symlink(outside / "config.json", dir / "config.json");
  CHECK(refused().find("leads outside its folder") != std::string::npos);
  CHECK(r.resolve_params({}, in_folder(OutsideLinks::allow)).values.at("heads") == 16);
  // A link inside the folder is followed.
  fs::remove(dir / "config.json");
  fs::create_directory(dir / "blobs");
  write_file(dir / "blobs" / "abc", R"({"num_attention_heads": 24})");
  fs::create_symlink(dir / "blobs" / "abc", dir / "config.json");
  CHECK(r.resolve_params({}, in_folder()).values.at("heads") == 24);
}

TEST_CASE("a rules file's tests may give the checkpoint's config.json") {
  const std::string text = std::string(kRules) + R"(tests:
  - {tensor: a.w, mp: 2, config: {num_attention_heads: 8, quantization_config: {sym: true}}, expect: {output: a.w, split: out}}
  - {tensor: a.w, mp: 2, params: {heads: 8, kv_heads: 8}, expect: {output: a.w}}
  - {tensor: a.w, mp: 2, params: {heads: 4}, config: {num_attention_heads: 8}, expect: {output: a.w}}
  - {tensor: a.w, mp: 2, config: {num_attention_heads: 8.0}, expect: {output: a.w}}
  - {tensor: a.w, mp: 2, expect: {output: a.w}}
)";
  const Rules r = Rules::load_text(text, "t.yaml");
  const Rules::TestReport report = r.run_tests();
  CHECK(report.run == 5);
  REQUIRE(report.failures.size() == 3);
  CHECK(
      report.failures[0] ==
      "t.yaml:17:5: test 'a.w' (mp=2, heads=4): the test's heads=4 contradicts the checkpoint: config.json: "
      "num_attention_heads is 8 (leave --heads out, or give the same value)");
  CHECK(report.failures[1].find("config.json: num_attention_heads is 8.0, not a non-negative integer") !=
        std::string::npos);
  CHECK(report.failures[2].find("(the test gives no config.json)") != std::string::npos);
}

TEST_CASE("from_config: an index reads a list element and a bad index is a rules error at its place") {
  const Rules r = Rules::load_text(R"(shardwise: 1
name: list-index
params:
  rows: {from_config: ['quantization_config.weight_block_size[0]', 'quantize_config.json:block[0]'], range: [1, 4096], default: 128}
  cols: {from_config: 'quantization_config.weight_block_size[1]', range: [1, 4096], default: 128}
  deep: {from_config: 'grid[1][0]', default: 0}
output: {file: "rank{rank}.safetensors"}
keys: [{match: '(?P<key>[a-z]+)$'}]
table: {w: {split: out}}
)",
                                   "list-index.yaml");
  CHECK(r.params()[0].from_config[0] ==
        ConfigKey{"config.json", {"quantization_config", "weight_block_size", "[0]"}});
  CHECK(r.params()[0].from_config[0].text() == "config.json: quantization_config.weight_block_size[0]");
  CHECK(r.params()[2].from_config[0].key() == "grid[1][0]");
  const ResolvedParams resolved = r.resolve_params(
      {}, config(R"({"quantization_config": {"weight_block_size": [64, 32]}, "grid": [[1], [7, 8]]})"));
  CHECK(resolved.values.at("rows") == 64);
  CHECK(resolved.values.at("cols") == 32);
  CHECK(resolved.values.at("deep") == 7);
  CHECK(source_of(resolved, "cols") == "config.json: quantization_config.weight_block_size[1]");
  // Past the end, or not a list: absent, the next key or the default.
  const ResolvedParams short_list =
      r.resolve_params({}, config(R"({"quantization_config": {"weight_block_size": [64]}})",
                                  {{"quantize_config.json", R"({"block": [16]})"}}));
  CHECK(short_list.values.at("rows") == 64);
  CHECK(short_list.values.at("cols") == 128);
  CHECK(source_of(short_list, "cols") == "default");
  CHECK(r.resolve_params({}, config(R"({"quantization_config": {"weight_block_size": 64}})"))
            .values.at("rows") == 128);
  // Out of range or not an integer: the checkpoint's error (exit 4), naming the key.
  CHECK(
      error_of(r, {}, config(R"({"quantization_config": {"weight_block_size": [0, 8192]}})"),
               ErrorKind::input) ==
      "config.json: quantization_config.weight_block_size[0] is 0, outside the range [1, 4096] of parameter "
      "rows (from_config at list-index.yaml:4:3)\n"
      "config.json: quantization_config.weight_block_size[1] is 8192, outside the range [1, 4096] of "
      "parameter "
      "cols (from_config at list-index.yaml:5:3)");
  CHECK_THAT(error_of(r, {}, config(R"({"quantization_config": {"weight_block_size": [1.5, 8]}})"),
                      ErrorKind::input),
             Catch::Contains("weight_block_size[0] is 1.5, not a non-negative integer"));
  // A flag out of range: the command line's (exit 2).
  CHECK(error_of(r, {{"rows", 5000}}, ConfigFiles(), ErrorKind::usage) ==
        "--rows 5000 is outside the range [1, 4096] of parameter rows (list-index.yaml:4:3)");

  CHECK_THAT(load_error("  a: {from_config: 'a[]'}\n"),
             Catch::Contains("x.yaml:4:20: from_config of parameter 'a': key 'a[]': 'a[]' is not a name with "
                             "list indices (expected name or name[N], N of at most 6 digits)"));
  for (const char* bad : {"a[-1]", "a[x]", "a[0", "a[0]b", "a[1234567]"})
    CHECK_THAT(load_error(fmt::format("  a: {{from_config: '{}'}}\n", bad)),
               Catch::Contains("is not a name with list indices"));
  CHECK_THAT(load_error("  a: {from_config: 'q.[0]'}\n"), Catch::Contains("has an empty component"));
  CHECK_THAT(load_error("  a: {range: [8, 4]}\n"), Catch::Contains("range of parameter 'a' is empty: 8 > 4"));
  CHECK_THAT(load_error("  a: {default: 0, range: [1, 4]}\n"),
             Catch::Contains("default 0 of parameter 'a' is outside its range [1, 4]"));
  CHECK_THAT(load_error("  a: {choices: [p, q], range: [1, 4]}\n"),
             Catch::Contains("a choice parameter takes none"));
}

TEST_CASE("why_absent: an index past the end or into a non-list says so") {
  const ConfigFiles files = config(R"({"q": {"b": [64], "s": 3}})");
  std::string problem;
  const auto key = [&](const char* text) { return *shardwise::rules::parse_config_key(text, problem); };
  CHECK(files.why_absent(key("q.b[1]")) == "config.json: q.b has 1 element, no [1]");
  CHECK(files.why_absent(key("q.s[0]")) == "config.json: q.s is not a list");
  CHECK(files.why_absent(key("q.b[0].x")) == "config.json: q.b[0] is not an object");
  CHECK(files.value(key("q.b[0]"))->number == 64);
}
