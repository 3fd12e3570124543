#pragma once
// `convert --reverse`: a converted folder read through its manifest and the original checkpoint's
// tensors written back (their names, dtypes, shapes and bytes), in Hugging Face's layout
// (model.safetensors, or model-0000K-of-0000N.safetensors with model.safetensors.index.json).
//
// Every tensor is gathered whole from the rank files as a reshard to mp 1 gathers it (the pieces'
// recorded checksums compared as they are read; a fused output's parts gathered each on its own,
// replicated heads read once and their copies compared), then written under the name, dtype and
// shape the manifest records as its origin (version 5), its rows put back when the conversion
// permuted them, the chunks an unfuse rule cut from one source (version 6) joined again.
// A conversion that dropped tensors (skip) or computed them in a way that does not give the source
// back (a cast that rounds, a dequantisation) cannot be reversed: every such step is reported, by
// rule, before anything is written.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/core/paths.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/reshard/reshard.hpp>
#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::reshard {

// A converted tensor written back into an original one: all of it, or the rows [begin, end) of its
// dim 0 that an unfuse rule cut out as a chunk.
struct ReversedPiece {
  std::size_t logical = 0;  // index into ReversePlan::gathered.logical: the converted tensor
  std::uint64_t begin = 0;  // the rows of the original it is
  std::uint64_t end = 0;
  std::uint64_t offset = 0;  // where its bytes go in the original tensor's
  std::uint64_t bytes = 0;
  std::optional<plan::RowPermutation> undo;  // the permutation that puts its rows back
};

struct ReversedTensor {
  std::string name;  // the source's name, dtype and shape, written
  st::DType dtype;
  st::Shape shape;
  std::uint64_t bytes = 0;
  std::vector<ReversedPiece> from;  // in row order, covering the tensor (one: the whole)
};

struct ReverseFile {
  std::string file;                  // model.safetensors or model-0000K-of-0000N.safetensors
  std::vector<std::size_t> tensors;  // indices into ReversePlan::tensors
  std::uint64_t bytes = 0;           // tensor bytes
};

struct ReversePlan {
  ReshardPlan gathered;  // the converted folder at mp 1: each tensor whole, with the pieces it is made of
  std::vector<ReversedTensor> tensors;  // in natural name order (as the shards are filled)
  std::vector<ReverseFile> files;
  std::string index;                    // model.safetensors.index.json's text; empty for one file
  std::vector<std::string> side_files;  // the converted folder's side files, copied back
};

// Reads and checks the converted folder `from` (its manifest must record origins: version 5) and
// lays out the original tensors in shards of at most `max_shard_size` bytes (transformers'
// save_pretrained assignment). Error(input) naming every step that prevents the reversal (each
// skip rule with its count and first tensor; each irreversible transform or cast with its rule,
// count and first tensor), and every problem of the folder, in one run.
ReversePlan plan_reverse(const std::string& from, std::uint64_t max_shard_size, OutsideLinks links);

// The plan as text (--dry-run): per file, each tensor with the converted tensor it comes from.
std::string format_reverse_text(const ReversePlan& plan);

struct ReverseOptions {
  std::string output_dir;  // created when missing; never the converted folder
  bool force = false;      // replace files of the same names already in output_dir
  std::size_t piece_bytes = 8 << 20;
};

struct ReverseSummary {
  std::size_t files = 0;
  std::size_t tensors = 0;
  std::uint64_t bytes = 0;
};

// Writes the files of `plan` into options.output_dir, each through a temporary name renamed when
// complete, and copies the side files. A piece whose bytes differ from its recorded checksum stops
// the run before the file reading it is committed (Error(input) naming it).
ReverseSummary execute_reverse(const ReversePlan& plan, const ReverseOptions& options);

}  // namespace shardwise::reshard
