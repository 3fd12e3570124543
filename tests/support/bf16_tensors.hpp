#pragma once
// Small BF16 checkpoints built by hand for the structure tests (fuse, unfuse, stacked experts):
// tensors as bytes, every element a distinct 16-bit pattern, sliced, concatenated and stacked
// here from STRUCTURE_OPS' formulas (never by the planner), written and read back as safetensors
// from the format's definition.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardwise::test::bf16 {

using Shape = std::vector<std::uint64_t>;

// A BF16 tensor as rows of bytes (2 per element).
struct Tensor {
  Shape shape;
  std::string bytes;
  std::uint64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  std::uint64_t row_bytes() const { return bytes.size() / rows(); }
};

using Tensors = std::map<std::string, Tensor>;

// Every element distinct across the checkpoint: the running counter `next` (16 bits wrap, so
// tensors stay small).
Tensor make(Shape shape, std::uint32_t& next);
// Rows [begin, end) of dim 0.
Tensor rows(const Tensor& t, std::uint64_t begin, std::uint64_t end);
// Columns [begin, end) of dim 1 of a 2-D tensor.
Tensor columns(const Tensor& t, std::uint64_t begin, std::uint64_t end);
// Block `rank` of `mp` equal row (dim 0) or column (dim 1) blocks.
Tensor block(const Tensor& t, int dim, std::uint64_t rank, std::uint64_t mp);
// Concatenation along dim 0.
Tensor cat(const std::vector<Tensor>& parts);
// Stacked along a new dim 0.
Tensor stack(const std::vector<Tensor>& parts);

// One safetensors file, written from the format's definition.
void write_safetensors(const std::filesystem::path& path, const Tensors& tensors);
// The checkpoint's config.json, which the example rules read their head and expert counts from.
void write_config(const std::filesystem::path& dir, const nlohmann::json& config);
// Every tensor of every .safetensors file in `folder`: "FILE:NAME" -> tensor (BF16 checked).
Tensors read_outputs(const std::filesystem::path& folder);
// Each expected tensor present with its shape and bytes, and nothing else.
void compare(const Tensors& expected, const Tensors& actual);

}  // namespace shardwise::test::bf16
