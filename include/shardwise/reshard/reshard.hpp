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
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/output/manifest.hpp>
#include <shardwise/output/page_cache.hpp>
#include <shardwise/output/progress.hpp>
#include <shardwise/output/run_options.hpp>
#include <shardwise/output/work_share.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/plan/planner.hpp>
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
  std::uint64_t bytes = 0;  // of the piece in that file
  // The checksum the old manifest records for a split or owned piece, compared with its bytes
  // before any new file made from them is committed (a folder without a manifest records none;
  // replicated copies: see CopyCheck).
  std::optional<std::uint64_t> xxh3;
};

// What the old manifest records a logical tensor was made from (output::TensorOrigin), as a plan
// of a large model's tensor count holds it: 10,000s of them, most named as the tensor they belong
// to and with one of a few `irreversible` texts.
struct Origin {
  plan::Name name;  // in ReshardPlan::names
  st::DType dtype;
  plan::Shape shape;
  std::optional<plan::RowPermutation> rows{};
  std::uint32_t irreversible = 0;  // index into ReshardPlan::origin_texts
  plan::Slice within{};
};

inline constexpr std::uint32_t kNoOrigin = 0xFFFFFFFF;

struct LogicalTensor {
  plan::Name name;  // in ReshardPlan::names
  st::DType dtype;
  plan::Shape shape;  // logical
  plan::Placement placement;
  // Both in ReshardPlan::pieces.
  std::span<const Piece> pieces;  // split: in range order, covering the dim; otherwise the copy read
  // Replicated, checked when written (CopyCheck::when_written): the other ranks' copies, not read
  // but hashed while the new files are written, each with its recorded checksum.
  std::span<const Piece> copies;
  // What the old manifest records it was made from (its first piece that records one), carried to
  // the new manifest's entries (origin_of); kNoOrigin when none does. Left so by
  // plan_reverse_gather, whose caller reads the manifest's entries themselves.
  std::uint32_t origin = kNoOrigin;
};

// A tensor of a new rank file: [begin, end) of its logical tensor's split dim, or the whole (its
// shape: shape_of).
struct NewTensor {
  std::size_t logical = 0;  // index into ReshardPlan::logical
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

// Held once and moved, never copied: its logical tensors point into its own lists.
struct ReshardPlan {
  ReshardPlan() = default;
  ReshardPlan(const ReshardPlan&) = delete;
  ReshardPlan& operator=(const ReshardPlan&) = delete;
  ReshardPlan(ReshardPlan&&) noexcept = default;
  ReshardPlan& operator=(ReshardPlan&&) noexcept = default;
  ~ReshardPlan() = default;

  std::string from;  // the old folder
  std::uint64_t from_model_parallel = 0;
  std::uint64_t model_parallel = 0;
  // The old folder's, without its tensor entries once they are read (plan_reverse_gather keeps
  // them): at a large model's tensor count they are the largest thing planning reads.
  output::Manifest from_manifest;
  std::vector<OldFile> old_files;       // in rank order
  std::vector<LogicalTensor> logical;   // in name order
  std::vector<NewFile> outputs;         // one per new rank, in rank order
  std::vector<std::string> side_files;  // copied verbatim, checked against the old manifest
  std::uint64_t output_bytes = 0;       // tensor bytes of every new file
  // Whether the old folder's files may lead outside it (--allow-outside-links).
  OutsideLinks outside_links = OutsideLinks::refuse;
  // What the logical tensors hold, one list each (at Pro's count, 200,000s of names and pieces):
  // the names of tensors and origins (shared with the new files' outline), every piece and copy,
  // the origins and their irreversible steps' texts (each text once).
  std::shared_ptr<plan::NameArena> names = std::make_shared<plan::NameArena>();
  std::vector<Piece> pieces;
  std::vector<Origin> origins;
  std::vector<std::string> origin_texts;
};

// A new tensor's shape as written: its logical tensor's, the split dim [begin, end) of it.
st::Shape shape_of(const ReshardPlan& plan, const NewTensor& tensor);

// What the old manifest records `tensor` was made from, as the manifest's entries hold it
// (nullopt: nothing recorded).
std::optional<output::TensorOrigin> origin_of(const ReshardPlan& plan, const LogicalTensor& tensor);

// When replicated copies are hashed and compared with the checksums the old manifest records:
// while planning (every copy read before anything else; a dry run writes nothing), or while the
// new files are written (the copy read hashed as it is gathered, the others on a thread of their
// own; no new file committed before all are known sound).
enum class CopyCheck { when_planned, when_written };

// Reads and checks the old folder (its manifest, every rank file's size and header, replicated
// copies compared as `copies` says) and cuts every logical tensor for `model_parallel`. Every
// problem found is reported in one Error(input) (Error(usage) for an mp out of range), as `plan` does.
// A rank file or side file that leads outside the folder is one, unless `links` allows it.
ReshardPlan plan_reshard(const std::string& from, std::uint64_t model_parallel,
                         CopyCheck copies = CopyCheck::when_planned,
                         OutsideLinks links = OutsideLinks::refuse);
// The same for a folder without a manifest (or whose manifest predates version 3; replicated
// copies compared when planned, by the checksums derived from them): its rank files
// are named by the rules' output pattern, and every tensor name in them is decided with `rules` and
// `params` (which must place each name as itself, as the bundled W4A16 rules do for the reference
// converter's outputs); Error(input) naming every tensor that cannot be placed and why.
ReshardPlan plan_reshard(const std::string& from, std::uint64_t model_parallel, const rules::Rules& rules,
                         const rules::Params& params, OutsideLinks links = OutsideLinks::refuse);

// The plan as text: per new file, each tensor and the old pieces it is made of; narrowed as
// `plan`'s views are (--rank: one new rank; --filter: an RE2 pattern searched in tensor names;
// --rule: a cut, "split dim D", "owned" or "replicated", since a folder does not record which rule
// decided a tensor). Error(usage) for a rank beyond the new mp, a cut no tensor has, a bad pattern.
std::string format_reshard_text(const ReshardPlan& plan, const plan::PlanFilter& filter = {});
// The same, handed to `sink` in parts (never held whole); Error(usage) before the first part.
void format_reshard_text(const ReshardPlan& plan, const plan::PlanFilter& filter,
                         const std::function<void(std::string_view)>& sink);
// The same as JSON (one document).
std::string format_reshard_json(const ReshardPlan& plan, const plan::PlanFilter& filter = {});
// The same, handed to `sink` in parts (never held whole); Error(usage) before the first part.
void format_reshard_json(const ReshardPlan& plan, const plan::PlanFilter& filter,
                         const std::function<void(std::string_view)>& sink);
// The plan at a glance: tensors and bytes per cut, per new rank file its size and the old files
// it reads.
std::string format_reshard_summary(const ReshardPlan& plan);

struct ReshardOptions {
  // As for convert: the output folder, threads, --resume, --ranks, --distributed, --page-cache (what
  // was read and written leaves the page cache; the bytes written are the same), ...
  output::RunOptions run;
  // Staging buffer per thread: each new file is written in blocks of this size (4 MiB: at Pro's
  // tensor count two writers' blocks are held beside the plan; 8 MiB wrote no faster).
  std::size_t piece_bytes = 4 << 20;
};

// What a run wrote, as convert reports it.
using ReshardSummary = output::RunSummary;

// Writes this run's new rank files (all, or options.ranks / options.launch's share), the side
// files (with rank 0) and the manifest, as convert_plan does: every file through a temporary name,
// under the folder's lock, its checksums recorded as it lands, --resume keeping finished files,
// the manifest completed by whichever run finishes the last file. The old pieces this run reads
// are compared with their recorded checksums: those read whole as they are gathered, the others
// before anything is written. A new file that read a damaged piece is never committed; the files
// that read none are, and the run then fails with Error(input) naming every damaged piece.
// Throws Error(io) naming the path on failure, Error(input) when an old file changed since it was
// planned.
ReshardSummary execute_reshard(const ReshardPlan& plan, const ReshardOptions& options);

}  // namespace shardwise::reshard
