#pragma once
// Small checkpoints and rules for the planner's tests: header-only safetensors files written in a
// temp folder (data zero-filled), and a generic rules file that exercises every kind of placement.

#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/safetensors/writer.hpp>

#include "support/support.hpp"

namespace shardwise::test {

// A generic rules file (no real model): a 3-member packed layout like GPTQ's, keys from the module
// name, a table with every split, an override, ownership by index, skips and side files.
inline const char* const kPlanRules = R"(shardwise: 1
name: plan-test
params:
  n_items: {default: 4, help: owned items}
output:
  file: "part{rank}-of-{mp}.safetensors"
side_files: [vocab.txt, missing.txt]
unknown_keys: replicate
normalize:
  strip_prefix: ["model."]
  rename:
    - {from: block, to: blk}
skip:
  - name: drop-extra
    match: '\.extra$'
    reason: not used at inference
layouts:
  packed:
    members:
      qweight: {shape: [in/8, out], dtype: [I32]}
      qzeros:  {shape: [in/128, out/8], dtype: [I32]}
      scales:  {shape: [in/128, out], dtype: [F16, BF16, F32], cast: BF16}
keys:
  - name: packed
    match: '(?P<key>[^.]+)\.(?:qweight|qzeros|scales)$'
  - name: module
    match: '(?P<key>[^.]+)\.weight$'
table:
  col:   {split: out}
  row:   {split: in}
  rep:   {split: replicate}
  old:   {rename: col, split: out}
overrides:
  - name: shared
    match: '(?:^|\.)shared(?:\.|$)'
    split: replicate
ownership:
  - name: items
    match: '\.items\.(?P<index>[0-9]+)\.'
    count: n_items
)";

struct TensorSpec {
  std::string name;
  st::DType dtype;
  st::Shape shape;
};

// Writes a safetensors file holding `tensors` (zero data) at `path`.
inline void write_checkpoint_file(const std::filesystem::path& path, const std::vector<TensorSpec>& tensors) {
  std::vector<st::OutputTensor> list;
  for (const TensorSpec& t : tensors) list.push_back(st::OutputTensor{t.name, t.dtype, t.shape});
  const st::FileLayout layout = st::layout_file(list);
  std::string bytes(8, '\0');
  const std::uint64_t n = layout.header.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  bytes += layout.header;
  bytes.resize(layout.file_size, '\0');
  write_file(path, bytes);
}

// A packed triple for a logical [out, in] weight, as the layout above declares it.
inline std::vector<TensorSpec> packed(const std::string& base, std::uint64_t out, std::uint64_t in,
                                      st::DType scales = st::DType::F16) {
  return {{base + ".qweight", st::DType::I32, {in / 8, out}},
          {base + ".qzeros", st::DType::I32, {in / 128, out / 8}},
          {base + ".scales", scales, {in / 128, out}}};
}

inline std::vector<TensorSpec> operator+(std::vector<TensorSpec> a, const std::vector<TensorSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The checkpoint in `dir` planned at `mp` with the rules `rules_text`, named `rules_name` in
// messages (`plan-test.yaml:38:5`).
inline plan::Plan plan_folder_with(const std::filesystem::path& dir, const std::string& rules_text,
                                   const std::string& rules_name, std::uint64_t mp,
                                   rules::Params params = {}) {
  const rules::Rules rules = rules::Rules::load_text(rules_text, rules_name);
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.string());
  return plan::plan_checkpoint(checkpoint, rules, {mp, std::move(params)});
}

// The output tensor `name` of rank `rank`; the test fails when the plan has none.
inline const plan::PlannedTensor& find(const plan::Plan& plan, std::uint64_t rank, const std::string& name) {
  for (const plan::PlannedTensor& t : plan.outputs.at(rank).tensors) {
    if (t.name == name) return t;
  }
  FAIL("no " << name << " on rank " << rank);
  throw 0;
}

// The problems a failed plan's message lists, one per line, without the heading (it names the
// temp dir).
inline std::vector<std::string> problem_lines(const std::string& text) {
  std::vector<std::string> lines;
  for (std::size_t at = text.find("\n  "); at != std::string::npos;) {
    const std::size_t next = text.find("\n  ", at + 3);
    lines.push_back(text.substr(at + 3, next == std::string::npos ? std::string::npos : next - at - 3));
    at = next;
  }
  return lines;
}

}  // namespace shardwise::test
