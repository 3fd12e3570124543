#include "plan/hf_layout.hpp"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include <shardwise/safetensors/hf_shards.hpp>
#include "plan/mirror.hpp"

namespace shardwise::plan::detail {

namespace {

// The index as transformers writes it, over every file's tensors.
GeneratedFile hf_index(const Plan& plan) {
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::uint64_t total = 0;
  for (const OutputFile& out : plan.outputs) {
    for (const PlannedTensor& t : out.tensors) {
      weight_map.emplace_back(t.name, out.file);
      total += t.bytes;
    }
  }
  return GeneratedFile{kIndexFileName, st::hf_index_json(std::move(weight_map), total), "", {}, "written"};
}

}  // namespace

HfFiles assign_hf_files(const std::vector<std::pair<std::string_view, std::uint64_t>>& tensors,
                        std::uint64_t max_size) {
  std::vector<std::size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&tensors](std::size_t a, std::size_t b) {
    return st::natural_name_less(tensors[a].first, tensors[b].first);
  });
  std::vector<std::uint64_t> sizes;
  sizes.reserve(order.size());
  for (const std::size_t k : order) sizes.push_back(tensors[k].second);
  const std::vector<std::vector<std::size_t>> shards = st::split_into_shards(sizes, max_size);
  HfFiles files{st::hf_shard_file_names(std::max<std::size_t>(shards.size(), 1)),
                std::vector<std::size_t>(tensors.size(), 0)};
  for (std::size_t shard = 0; shard < shards.size(); ++shard) {
    for (const std::size_t position : shards[shard]) files.file_of[order[position]] = shard;
  }
  return files;
}

void make_hf_outputs(Plan& plan, const st::Checkpoint& checkpoint) {
  std::vector<PlannedTensor> tensors = std::move(plan.outputs.at(0).tensors);
  HfFiles files;
  if (plan.max_shard_size == 0) {
    for (std::size_t i = 0; i < checkpoint.files().size(); ++i) files.names.push_back(checkpoint.file_name(i));
    for (const PlannedTensor& t : tensors) files.file_of.push_back(plan.sources[t.source].file);
  } else {
    std::vector<std::pair<std::string_view, std::uint64_t>> sizes;
    sizes.reserve(tensors.size());
    for (const PlannedTensor& t : tensors) sizes.emplace_back(t.name, t.bytes);
    files = assign_hf_files(sizes, plan.max_shard_size);
  }
  plan.outputs.assign(files.names.size(), OutputFile{});
  for (std::size_t i = 0; i < files.names.size(); ++i) {
    plan.outputs[i].rank = i;
    plan.outputs[i].file = files.names[i];
    plan.outputs[i].metadata = {{"format", "pt"}};
  }
  // `tensors` is sorted by output name: so is each file's share of it.
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    OutputFile& out = plan.outputs[files.file_of[k]];
    out.bytes += tensors[k].bytes;
    out.tensors.push_back(std::move(tensors[k]));
  }
  for (OutputFile& out : plan.outputs) out.tensors.shrink_to_fit();
  plan.model_parallel = plan.outputs.size();
  std::error_code ec;
  const bool input_index =
      std::filesystem::is_regular_file(std::filesystem::path(plan.input_root) / kIndexFileName, ec);
  if (plan.max_shard_size == 0 ? input_index : plan.outputs.size() > 1) plan.generated_files.push_back(hf_index(plan));
}

}  // namespace shardwise::plan::detail
