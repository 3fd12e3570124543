#pragma once
// A checkpoint saved in Hugging Face's layout: which tensors go in which file, as transformers'
// save_pretrained assigns them (huggingface_hub's split_state_dict_into_shards_factory), the files'
// names, and model.safetensors.index.json as transformers writes it. Pure functions, no I/O; the
// output step uses them for `output: {layout: hf, max_shard_size}`.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shardwise::st {

// huggingface_hub's parse_size_to_int, for the text of an option: digits alone are bytes; else a
// number (Python's float syntax: "5", "0.5", "1e3", ".5") and a unit of TB, GB, MB or KB in any
// case, powers of ten, spaces allowed around both, giving int(float(number) x 10^k) truncated as
// Python computes it ("0.3MB" is 300000). Throws Error(usage) naming `text` for anything else:
// binary units ("5GiB") are refused, as huggingface_hub refuses them, and so is a size below 1.
std::uint64_t parse_max_shard_size(std::string_view text);

// transformers' default max_shard_size ("5GB").
inline constexpr std::uint64_t kDefaultMaxShardSize = 5'000'000'000;

// The shards of `sizes` (byte sizes of the tensors, in the order they are fed), as huggingface_hub
// assigns them: each tensor joins the shard being filled unless that would pass `max_size` (a
// shard may hold exactly max_size), which then closes; a tensor larger than max_size is a shard of
// its own, placed before the shard being filled. Each shard lists tensor indices in feed order.
std::vector<std::vector<std::size_t>> split_into_shards(const std::vector<std::uint64_t>& sizes,
                                                        std::uint64_t max_size);

// The file names of `count` shards: model.safetensors alone (and no index) for one,
// model-00001-of-0000N.safetensors ... for more (at least five digits each, as Python's {:05d}).
std::vector<std::string> hf_shard_file_names(std::size_t count);

// The order tensors are fed to split_into_shards (a converter cannot know a model's registration
// order, so: natural name order): names cut into maximal runs of ASCII digits and the text between;
// text compares bytewise, digit runs by value, then the shorter run first; so layers.2 precedes
// layers.10. A strict weak order; equal only for equal names.
bool natural_name_less(std::string_view a, std::string_view b);

// model.safetensors.index.json as transformers writes it: json.dumps({"metadata": {"total_size":
// N}, "weight_map": {...}}, indent=2, sort_keys=True) + "\n": entries sorted by name (bytewise, as
// Python sorts code points), names and files as \uXXXX-escaped ASCII. `weight_map` in any order;
// Error(input) for a name that is not UTF-8 or appears twice.
std::string hf_index_json(std::vector<std::pair<std::string, std::string>> weight_map,
                          std::uint64_t total_size);

}  // namespace shardwise::st
