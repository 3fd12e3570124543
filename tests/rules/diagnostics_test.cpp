// Bad rules files: every problem of a file in one Error(rules), each `FILE:LINE:COL: message`, in
// file order, word for word.
#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>

#include "support/support.hpp"

using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::rules::Rules;

namespace {

std::string data_file(const std::string& name) {
  return shardwise::test::read_file(shardwise::test::source_dir() + "/tests/data/rules/" + name);
}

// The message of the Error(rules) thrown by loading `yaml` as `name`.
std::string load_error(const std::string& yaml, const std::string& name) {
  try {
    Rules::load_text(yaml, name);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    return e.what();
  }
  FAIL("loading " << name << " did not fail");
  return "";
}

const char* const kMinimal = "shardwise: 1\nname: t\noutput: {file: \"m{rank}.safetensors\"}\n";

}  // namespace

TEST_CASE("every schema error of a file, located, in one error") {
  const std::string expected =
      "invalid rules file bad.yaml (24 problems):\n"
      "  bad.yaml:4:15: unknown_keys must be replicate or error, got 'replicat' (did you mean 'replicate'?)\n"
      "  bad.yaml:8:28: strip_prefix 'model.layers.' can never apply: the earlier prefix 'model.' (8:18) is "
      "removed first\n"
      "  bad.yaml:11:7: rename rule never decides anything: it is identical to the rule at 10:7\n"
      "  bad.yaml:14:13: skip rule never decides anything: its match is identical to the rule at 13:13\n"
      "  bad.yaml:15:13: invalid regex 'a(b' in skip rule: missing ): a(b\n"
      "  bad.yaml:16:5: skip rule is missing required key 'reason'\n"
      "  bad.yaml:21:24: bad shape expression 'in/0' in member 'scales' of layout 'gptq': expected out, in, "
      "out/N or in/N "
      "(N a positive integer or a parameter's name)\n"
      "  bad.yaml:21:44: unknown dtype 'FP16' in dtype of member 'scales' of layout 'gptq' (did you mean "
      "'F16'?)\n"
      "  bad.yaml:21:57: cast of member 'scales' of layout 'gptq' needs a 'dtype' list (the dtypes it "
      "converts from)\n"
      "  bad.yaml:24:7: member suffix 'scales' of layout 'other' is already claimed by layout 'gptq' (18:3)\n"
      "  bad.yaml:24:23: shape of member 'scales' of layout 'other' must have one dim or two (each out, in, "
      "out/N or in/N), got 3\n"
      "  bad.yaml:24:61: cast from F32 to F16 is not supported (supported: F16->BF16, F32->BF16, or no "
      "change)\n"
      "  bad.yaml:25:57: cast from F32 to F16 is not supported (supported: F16->BF16, F32->BF16, or no "
      "change)\n"
      "  bad.yaml:28:13: key rule needs a (?P<key>...) group in its match, or a literal 'key:'\n"
      "  bad.yaml:29:5: key rule has both a literal 'key:' and a (?P<key>...) group: keep one\n"
      "  bad.yaml:31:7: table entry 'wq' is missing required key 'split'\n"
      "  bad.yaml:31:19: unknown key 'splt' in table entry 'wq' (did you mean 'split'?)\n"
      "  bad.yaml:32:15: 'split' of table entry 'wk' must be out, in or replicate, got 'column'\n"
      "  bad.yaml:33:3: duplicate key 'wq' in table (first at 31:3)\n"
      "  bad.yaml:34:3: table key 'a.b' can never match: a key is one name component (no '.')\n"
      "  bad.yaml:35:3: table key '' can never match: a key cannot be empty\n"
      "  bad.yaml:39:13: ownership rule needs an (?P<index>...) group in its match\n"
      "  bad.yaml:39:42: count names an undefined parameter 'n_expert' (did you mean 'n_experts'?)\n"
      "  bad.yaml:40:1: unknown key 'tabel' in the rules file (did you mean 'table'?)";
  CHECK(load_error(data_file("schema_errors.yaml"), "bad.yaml") == expected);
}

TEST_CASE("YAML syntax errors carry yaml-cpp's position") {
  CHECK(load_error(data_file("syntax_error.yaml"), "s.yaml") ==
        "invalid rules file s.yaml (1 problem):\n  s.yaml:5:7: YAML syntax error: end of sequence flow not "
        "found");
}

TEST_CASE("missing and mistyped top-level fields, unsafe file names") {
  CHECK(load_error(data_file("missing_fields.yaml"), "m.yaml") ==
        "invalid rules file m.yaml (5 problems):\n"
        "  m.yaml:1:1: the rules file is missing required key 'shardwise'\n"
        "  m.yaml:1:7: 'name' of the rules file must be a string, got a list\n"
        "  m.yaml:2:16: output file 'model.safetensors' must contain {rank}: every rank needs its own file\n"
        "  m.yaml:3:30: side file '../secret' must be a plain file name, not a path\n"
        "  m.yaml:3:41: side file 'tokenizer.json' is listed twice");
}

TEST_CASE("single mistakes, word for word") {
  struct Bad {
    std::string yaml;  // appended to a minimal valid file
    std::string message;
  };
  const Bad cases[] = {
      {"shardwise: 2\n", "x.yaml:4:1: duplicate key 'shardwise' in the rules file (first at 1:1)"},
      {"keys: {a: 1}\n", "x.yaml:4:7: keys must be a list, got a map"},
      {"layouts: {l: {members: {w: {shape: [out, out/8]}}}}\n",
       "x.yaml:4:36: shape of member 'w' of layout 'l' must have one 'out' dim and one 'in' dim"},
      {"layouts: {l: {members: {w: {shape: [in, sideways]}}}}\n",
       "x.yaml:4:41: bad shape expression 'sideways' in member 'w' of layout 'l': expected out, in, out/N or "
       "in/N (N a "
       "positive integer or a parameter's name)"},
      {"layouts: {l: {members: {}}}\n", "x.yaml:4:24: layout 'l' has no members"},
      {"params: {mp: {default: 2}}\n",
       "x.yaml:4:10: parameter 'mp' is built in (the --model-parallel value): do not declare it"},
      {"params: {k: {default: -1}}\n",
       "x.yaml:4:23: 'default' of parameter 'k' must be a non-negative integer, got '-1'"},
      {"normalize: {rename: [{from: a.b, to: c}]}\n",
       "x.yaml:4:22: rename 'a.b' -> 'c': both must be one name component (non-empty, no '.')"},
      {"overrides: [{match: x, split: replicated}]\n",
       "x.yaml:4:31: 'split' of override rule must be out, in or replicate, got 'replicated' (did you mean "
       "'replicate'?)"},
      {"keys: [{match: '(?P<key>x', key: k}]\n",
       "x.yaml:4:16: invalid regex '(?P<key>x' in key rule: missing ): (?P<key>x"},
      {"ownership: [{match: '(?P<index>\\d+)', count: mp}, {match: '(?P<index>\\d+)', count: mp}]\n",
       "x.yaml:4:59: ownership rule never decides anything: its match is identical to the rule at 4:21"},
      {"skip: [{match: x, reason: r, because: y}]\n", "x.yaml:4:30: unknown key 'because' in skip rule"},
  };
  for (const auto& bad : cases) {
    INFO(bad.yaml);
    const std::string message = load_error(kMinimal + bad.yaml, "x.yaml");
    CHECK(message == "invalid rules file x.yaml (1 problem):\n  " + bad.message);
  }
}

TEST_CASE("hostile files are refused, not crashed on") {
  CHECK(load_error(std::string(kMinimal) + "skip: " + std::string(5000, '[') + std::string(5000, ']') + "\n",
                   "deep.yaml") ==
        "invalid rules file deep.yaml (1 problem):\n  deep.yaml:4:10007: YAML nested too deeply (yaml-cpp's "
        "limit is 2000 levels)");
  CHECK_THROWS_WITH(Rules::load_text(std::string((1 << 20) + 1, '#'), "big.yaml"),
                    "big.yaml: rules file is 1048577 bytes; at most 1048576 are accepted");
  CHECK(load_error("[1, 2]", "l.yaml") ==
        "invalid rules file l.yaml (1 problem):\n  l.yaml:1:1: a rules file must be a map of sections, got a "
        "list");
}

TEST_CASE("unknown dtypes suggest the safetensors spelling of PyTorch and NumPy names") {
  const std::pair<const char*, const char*> cases[] = {
      {"INT32", "(did you mean 'I32'?)"},         {"int32", "(did you mean 'I32'?)"},
      {"torch.float16", "(did you mean 'F16'?)"}, {"bfloat16", "(did you mean 'BF16'?)"},
      {"i32", "(did you mean 'I32'?)"},           {"FLOAT", "(did you mean 'F32'?)"},
  };
  for (const auto& [dtype, suggestion] : cases) {
    INFO(dtype);
    const std::string yaml = std::string(kMinimal) +
                             "layouts:\n  l:\n    members:\n      qweight: {shape: [in/8, out], dtype: [" +
                             dtype + "]}\n";
    CHECK(load_error(yaml, "d.yaml") ==
          "invalid rules file d.yaml (1 problem):\n  d.yaml:7:45: unknown dtype '" + std::string(dtype) +
              "' in dtype of member 'qweight' of layout 'l' " + suggestion);
  }
}
