#pragma once
// Resharding: a folder of rank files written for one model parallelism rewritten for another, as
// `convert` of the original checkpoint at the new mp would write it, without that checkpoint.
//
// Every output tensor is a part of a logical tensor (the output as mp=1 writes it): a range of one
// dim (split), the whole on every rank (replicated), or the whole on one rank (owned: index of a
// scope's count). The old folder's manifest records which (docs/reshard.md); the new layout cuts
// the same logical tensors for the new mp, and each new tensor is gathered from pieces of the old
// rank files (a split on dim 0 appends ranges, on a later dim rows interleave).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <shardwise/convert/converter.hpp>
#include <shardwise/convert/manifest.hpp>
#include <shardwise/convert/progress.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::reshard {

// An old rank file, checked against the manifest (size, header, tensors).
struct OldFile {
  std::uint64_t rank = 0;
  std::string file;  // name in the old folder
  std::string path;
  FileIdentity identity;
};

// Where one old rank holds part of a logical tensor: [begin, end) of the split dim (a replicated or
// owned tensor: the whole, begin 0 and end the dim's size, or 0 and 0 for a scalar).
struct Piece {
  std::size_t file = 0;      // index into ReshardPlan::old_files
  std::uint64_t offset = 0;  // absolute offset of its first byte in that file
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

struct LogicalTensor {
  std::string name;
  st::DType dtype;
  st::Shape shape;  // logical
  plan::Placement placement;
  std::vector<Piece> pieces;  // split: in range order, covering the dim; otherwise the copy read
};

// A tensor of a new rank file: [begin, end) of its logical tensor's split dim, or the whole.
struct NewTensor {
  std::size_t logical = 0;  // index into ReshardPlan::logical
  st::Shape shape;          // as written
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  std::uint64_t bytes = 0;
};

struct NewFile {
  std::uint64_t rank = 0;
  std::string file;
  std::vector<NewTensor> tensors;  // in name order
  std::uint64_t bytes = 0;         // tensor bytes (header excluded)
};

struct ReshardPlan {
  std::string from;  // the old folder
  std::uint64_t from_model_parallel = 0;
  std::uint64_t model_parallel = 0;
  convert::Manifest from_manifest;  // the old folder's
  std::vector<OldFile> old_files;   // in rank order
  std::vector<LogicalTensor> logical;  // in name order
  std::vector<NewFile> outputs;        // one per new rank, in rank order
  std::vector<std::string> side_files;  // copied verbatim, checked against the old manifest
  std::uint64_t output_bytes = 0;       // tensor bytes of every new file
};

// Reads and checks the old folder (its manifest, every rank file's size and header, replicated
// copies hashed and compared) and cuts every logical tensor for `model_parallel`. Every problem
// found is reported in one Error(input) (Error(usage) for an mp out of range), as `plan` does.
ReshardPlan plan_reshard(const std::string& from, std::uint64_t model_parallel);
// The same for a folder without a manifest (or whose manifest predates version 3): its rank files
// are named by the rules' output pattern, and every tensor name in them is decided with `rules` and
// `params` (which must place each name as itself, as the bundled W4A16 rules do for the reference
// converter's outputs); Error(input) naming every tensor that cannot be placed and why.
ReshardPlan plan_reshard(const std::string& from, std::uint64_t model_parallel, const rules::Rules& rules,
                         const rules::Params& params);

// The plan as text: per new file, each tensor and the old pieces it is made of.
std::string format_reshard_text(const ReshardPlan& plan);
// The same as JSON (one document).
std::string format_reshard_json(const ReshardPlan& plan);

struct ReshardOptions {
  std::string output_dir;
  unsigned threads = 0;  // 0: one per hardware thread (files are written in parallel)
  convert::ProgressMode progress = convert::ProgressMode::automatic;
  convert::Overwrite overwrite = convert::Overwrite::refuse_foreign;
  std::size_t piece_bytes = 8 << 20;  // staging buffer per thread
};

struct ReshardSummary {
  std::size_t files = 0;
  std::size_t tensors = 0;
  std::size_t side_files = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
  unsigned threads = 0;
};

// Writes the new rank files, the side files and a complete manifest into options.output_dir,
// every file through a temporary name, under the folder's lock (as convert does). Throws Error(io)
// naming the path on failure, Error(input) when an old file changed since it was planned.
ReshardSummary execute_reshard(const ReshardPlan& plan, const ReshardOptions& options);

std::string format_summary(const ReshardSummary& summary);

}  // namespace shardwise::reshard
