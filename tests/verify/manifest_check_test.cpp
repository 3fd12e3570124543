// The manifest's record of the inputs against the input verify plans from: changed files are
// explained, unchanged ones say nothing, an old manifest says it cannot tell.
#include "verify/manifest_check.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace shardwise::test {
namespace {

TEST_CASE("verify: input files that changed since the conversion are named with what changed") {
  plan::Plan plan;
  plan.input_root = "/ckpt";
  plan.input_files = {"/ckpt/a.safetensors", "/ckpt/b.safetensors"};
  plan.input_identities = {{64, 10, 10, 1}, {32, 20, 20, 2}};
  plan.side_files = {"tokenizer.json"};
  plan.side_file_identities = {{5, 30, 30, 3}};

  output::Manifest manifest;
  manifest.inputs = {{"a.safetensors", {64, 10, 10, 1}},
                     {"b.safetensors", {32, 20, 20, 9}},
                     {"tokenizer.json", {4, 30, 30, 3}},
                     {"c.safetensors", {1, 1, 1, 1}}};
  CHECK(verify::input_changes(manifest, plan) ==
        std::vector<std::string>{
            "b.safetensors changed since the conversion: replaced by another file (inode 9 -> 2)",
            "tokenizer.json changed since the conversion: size 4 -> 5 bytes",
            "c.safetensors was an input of the conversion and is not one now"});

  manifest.inputs.resize(1);
  CHECK(verify::input_changes(manifest, plan).empty());

  manifest.inputs.clear();  // version 1
  CHECK(verify::input_changes(manifest, plan) ==
        std::vector<std::string>{
            "the manifest (written by an older shardwise) does not record the input files' "
            "sizes and times: whether they changed since the conversion is not known"});
}

}  // namespace
}  // namespace shardwise::test
