#pragma once
// The RoPE row permutation: the rows of a q or k projection (dim 0) reordered within each head
// between Meta's interleaved order, where rows (2i, 2i+1) rotate together, and Hugging Face's
// half-split order, where rows (i, i + head_dim/2) do (transformers' convert_llama_weights_to_hf
// `permute` and its inverse; docs/transforms.md). Pure index arithmetic: no bytes, no names.

#include <cstdint>

namespace shardwise::transform {

// The order a permuted tensor is written in; its source is in the other one.
enum class RopeOrder : std::uint8_t { interleaved, half_split };

// The source row that row `row` of the permuted tensor copies, for a tensor of `rows` rows in
// `heads` heads. Preconditions (the planner checks them): heads > 0, rows % heads == 0,
// (rows / heads) even, row < rows. Every row stays within its head:
//   to half_split:  out  h*hd + j*hd/2 + i  <-  in  h*hd + 2i + j
//   to interleaved: out  h*hd + 2i + j      <-  in  h*hd + j*hd/2 + i      (i < hd/2, j in {0, 1})
constexpr std::uint64_t rope_source_row(RopeOrder to, std::uint64_t rows, std::uint64_t heads,
                                        std::uint64_t row) {
  const std::uint64_t head_dim = rows / heads;
  const std::uint64_t half = head_dim / 2;
  const std::uint64_t base = row / head_dim * head_dim;
  const std::uint64_t within = row % head_dim;
  if (to == RopeOrder::half_split) return base + within % half * 2 + within / half;
  return base + within % 2 * half + within / 2;
}

// The order that undoes a permutation written in `to`.
constexpr RopeOrder inverse(RopeOrder to) {
  return to == RopeOrder::half_split ? RopeOrder::interleaved : RopeOrder::half_split;
}

}  // namespace shardwise::transform
