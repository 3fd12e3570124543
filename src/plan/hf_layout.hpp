#pragma once
// Internal to the planner: Hugging Face's layout (rules `output: {layout: hf}`, docs/rules.md).
// The tensors are planned as for one rank; then, once every output tensor and its size is known,
// they are assigned to files: as transformers' save_pretrained shards a state dict (natural name
// order, huggingface_hub's split by max_shard_size, model-0000K-of-0000N.safetensors, and
// model.safetensors.index.json when there are two or more files), or each to the file of its source
// (mirrored). Every file's header carries save_pretrained's metadata {"format": "pt"}.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <shardwise/plan/plan.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

namespace shardwise::plan::detail {

// Which file each tensor goes to, and the files' names.
struct HfFiles {
  std::vector<std::string> names;     // in file order
  std::vector<std::size_t> file_of;   // per tensor given, an index into `names`
};

// The assignment of save_pretrained: `tensors` (output name, bytes as written; in any order, names
// distinct) fed in natural name order (st::natural_name_less) to st::split_into_shards with
// `max_size`, the shards named by st::hf_shard_file_names. No tensor: one file, model.safetensors.
HfFiles assign_hf_files(const std::vector<std::pair<std::string_view, std::uint64_t>>& tensors,
                        std::uint64_t max_size);

// Replaces the plan's single output (rank 0 of mp=1, every tensor) with the Hugging Face files:
// sharded by plan.max_shard_size, or when it is 0 one file per input file under its name (a file
// left with no tensor is still written). Adds the index as a generated file when there are two or
// more shards, or, mirrored, when the input folder has one.
void make_hf_outputs(Plan& plan, const st::Checkpoint& checkpoint);

}  // namespace shardwise::plan::detail
