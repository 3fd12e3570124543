#pragma once
// The plan: where every input byte goes. Computed from headers alone; the single source of truth
// that `convert` executes and `verify` checks.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/core/file_identity.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/plan/name.hpp>
#include <shardwise/plan/ranks.hpp>
#include <shardwise/plan/shape.hpp>
#include <shardwise/rules/param_sources.hpp>
#include <shardwise/safetensors/dtype.hpp>
#include <shardwise/transform/row_permutation.hpp>

namespace shardwise::plan {

// The part of a source tensor an output tensor takes: the whole tensor (dim < 0) or the range
// [begin, end) of one dim.
struct Slice {
  int dim = -1;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  bool whole() const noexcept { return dim < 0; }
};

// Element conversion applied while copying. `reinterpret` copies the bytes unchanged and writes
// them as another dtype of the same or a smaller width (rules `transforms:`): the output's last
// dim is the slice's times the ratio of the widths (I8 [o, i/2] -> F4 [o, i]).
// The block-scaled transforms (rules `transforms:`, docs/transforms.md) read a second source, the
// tensor's Companion:
// - dequantize: E4M3 [r, c] slice x its block scale slice (E8M0 or F32) -> BF16 [r, c];
// - requantize_fp4_weight: FP4 bytes (I8 [r, c/2]) x E8M0 per 1x32 scale -> E4M3 [r, c];
// - requantize_fp4_scale: the E8M0 per 1x32 scale [r, c/32] alone -> E8M0 per 128x128 [r/128, c/128]
//   (no companion: the new scale depends on the old one only);
// - dequantize_packed: integer-packed codes (GPTQ, AWQ; the source) with their zeros, scales and
//   optional group index (the companion's sources) -> the [out, in] weight in BF16 or F16.
// A dequantization writes the tensor's dtype (BF16 or F16).
enum class Cast : std::uint8_t {
  none,
  f16_to_bf16,
  f32_to_bf16,
  reinterpret,
  dequantize,
  requantize_fp4_weight,
  requantize_fp4_scale,
  dequantize_packed
};

// How plans and reports name a cast: "f32_to_bf16", "dequantize", "requantize_fp4_weight", ...
inline const char* cast_name(Cast cast) {
  switch (cast) {
    case Cast::none:
      return "none";
    case Cast::f16_to_bf16:
      return "f16_to_bf16";
    case Cast::f32_to_bf16:
      return "f32_to_bf16";
    case Cast::reinterpret:
      return "reinterpret";
    case Cast::dequantize:
      return "dequantize";
    case Cast::requantize_fp4_weight:
      return "requantize_fp4_weight";
    case Cast::requantize_fp4_scale:
      return "requantize_fp4_scale";
    case Cast::dequantize_packed:
      return "dequantize_packed";
  }
  return "?";
}

struct Source {
  std::size_t file = 0;  // index into Plan::input_files
  Name name;             // the input tensor's name
  st::DType dtype;
  Shape shape;
  std::uint64_t offset = 0;  // absolute offset of its first byte in the input file
  std::uint64_t bytes = 0;
  // A chunk of an unfused input tensor (rules `unfuse:`): the rows [begin, end) of its dim 0 that
  // this source is (shape, offset and bytes are the chunk's); whole otherwise.
  Slice within{};
  std::uint64_t whole_rows = 0;  // a chunk: the input tensor's dim 0
};

// How an output tensor was cut from its logical tensor (the output as mp=1 writes it): recorded in
// manifests so that `reshard` can cut the logical tensor again for another mp. Which rank takes
// what: owner_rank() and split_range() (ranks.hpp). `composite`: a fused output
// (PlannedTensor::composite), whose parts have their own placements.
struct Placement {
  enum class Kind { replicated, split, owned, composite };
  Kind kind = Kind::replicated;
  int dim = -1;             // split: the output dim cut into mp equal ranges
  std::uint64_t unit = 1;   // split: a cut falls on a multiple of this many output elements
  std::uint64_t index = 0;  // owned: the index within its ownership scope
  std::uint64_t count = 0;  // owned: the scope's count
  // split: consecutive ranks holding the same range (rules `units:` with fewer units than ranks,
  // e.g. a key/value head on mp / heads ranks): the dim is cut into mp / replicas ranges and rank r
  // takes range r / replicas.
  std::uint64_t replicas = 1;
};

// The name of the manifest a run writes beside its outputs (output::kManifestFileName): an input
// file of that name (the input is itself a converted folder) is never copied as a side file.
inline constexpr const char* kManifestFileName = "shardwise-manifest.json";

inline constexpr std::size_t kNoSource = static_cast<std::size_t>(-1);
// A block as wide or as tall as the weight (a per-channel or per-tensor scale).
inline constexpr std::uint64_t kWholeBlock = static_cast<std::uint64_t>(-1);

// The integer packing of a dequantize_packed companion (transform/dequantize_int.hpp).
enum class Packing : std::uint8_t { gptq, gptq_v2, awq };

// The second source of a block-scaled transform: the weight's block scale, sliced to match the
// weight's slice (whole blocks), and what the transform needs to know about it.
struct Companion {
  std::size_t source = 0;           // index into Plan::sources
  Slice slice;                      // of that source, in its own dims
  std::uint64_t block_rows = 1;     // weight rows per scale row (kWholeBlock: per tensor)
  std::uint64_t block_cols = 1;     // weight columns (logical elements) per scale column (kWholeBlock: one)
  std::uint16_t nan_bits = 0xFFFF;  // dequantize: what a NaN becomes in BF16
  std::size_t rule = 0;             // index into Plan::rule_labels: the transform rule
  // dequantize_packed (the weight whole): `source` is the scales [G, out]; the zeros and the group
  // index (kNoSource: none, groups of group_size input rows) are read with them.
  std::size_t zeros = kNoSource;
  std::size_t group_index = kNoSource;
  Packing packing = Packing::gptq;
  std::uint8_t bits = 0;
  std::uint64_t group_size = 0;  // input rows per group; also the weight's [out, in] below
  std::uint64_t out = 0;
  std::uint64_t in = 0;
};

inline constexpr std::uint32_t kNoCompanion = 0xFFFFFFFF;
inline constexpr std::uint32_t kNoComposite = 0xFFFFFFFF;

// A reorder of a tensor's rows (dim 0; rules `transforms:` permute_rope), the bytes and dtype
// unchanged: row r of the whole permuted tensor copies source row
// transform::rope_source_row(to, rows, heads, r). A split or owned output is a part of the permuted
// tensor (permute, then cut: with head-aligned cuts this is each rank's heads permuted alone).
struct RowPermutation {
  transform::RopeOrder to = transform::RopeOrder::half_split;
  std::uint64_t heads = 0;
  std::size_t rule = 0;  // index into Plan::rule_labels: the transform rule
};

inline constexpr std::uint32_t kNoPermutation = 0xFFFFFFFF;

// A Pro-sized plan holds 240,000 of these: the fields are ordered to leave no padding, and the
// indices are 4 bytes (the planner refuses a checkpoint of 2^32 tensors or more).
struct PlannedTensor {
  Name name;                 // output name
  Shape shape;               // as written
  std::uint64_t bytes = 0;   // as written
  std::uint32_t source = 0;  // index into Plan::sources
  std::uint32_t rule = 0;    // index into Plan::rule_labels: the rule that placed it
  Slice slice;
  st::DType dtype;  // as written
  Cast cast = Cast::none;
  std::uint32_t companion = kNoCompanion;  // index into Plan::companions (block-scaled transforms)
  Placement placement{};
  // A fused output (rules `fuse:`): index into Plan::composites, whose parts give its bytes
  // (source, slice and cast above are its first part's then, and not read).
  std::uint32_t composite = kNoComposite;
  std::uint32_t permutation = kNoPermutation;  // index into Plan::permutations (rows reordered)
};

// A many-to-one output (rules `fuse:`, docs/rules.md): its bytes are its parts' bytes, each part
// a planned tensor exactly as that part alone would have been written on this rank (source, slice,
// cast, placement, its own output name). The parts come in blocks of `per_block` (one block per
// stacked index, or a single block); within a block they are concatenated along `dim` of the
// part's shape, in the rule's order; the blocks follow one another (stacked: along a new dim 0).
// Enough to invert: the parts, their order, the dim and every part's shape and cut.
struct Composite {
  std::size_t rule = 0;  // index into Plan::rule_labels: the fuse rule
  int dim = 0;
  bool stacked = false;
  std::uint64_t per_block = 1;
  std::vector<std::uint64_t> indices;  // stacked: each block's captured index, ascending
  std::vector<PlannedTensor> parts;    // block by block, in the rule's part order
};

struct OutputFile {
  std::uint64_t rank = 0;
  std::string file;                    // name within the output folder
  std::vector<PlannedTensor> tensors;  // sorted by output name
  std::uint64_t bytes = 0;             // tensor bytes (header excluded)
  // The header's __metadata__ (Hugging Face layout: {"format": "pt"}, as save_pretrained writes it).
  std::map<std::string, std::string> metadata{};
};

// How the outputs are named (the rules' `output:`). `per_rank`: OutputFile i is rank i of
// model_parallel. `mirror`: OutputFile i holds the tensors of input file i, under that file's name,
// each whole; model_parallel then counts the output files (one per input file) and a "rank" is an
// output file's position (--ranks, --distributed and the manifest count files so).
// `hf`: Hugging Face's layout (rules `output: {layout: hf}`): no ranks (mp=1); the tensors assigned
// to files after planning, as save_pretrained shards them (Plan::max_shard_size), or each to the
// file of its source when max_shard_size is 0 (mirrored); OutputFile i is file i, and a "rank" is an
// output file's position, as for `mirror`.
enum class OutputNaming { per_rank, mirror, hf };

// A file whose content the plan computes (a mirrored plan's rewritten index). Written with the side
// files, by the run that writes rank 0, and recorded in the manifest as a side file.
struct GeneratedFile {
  std::string file;  // name within the output folder
  std::string content;
  // The input file it is computed from, name within the input folder; empty for a file computed
  // from the plan alone (a Hugging Face layout's index).
  std::string from;
  FileIdentity from_identity;  // of that file when the plan read it
  // What the text plan says of it: "rewritten" (an index rewritten), "written" (computed from the
  // plan), "without its quantisation, torch_dtype bfloat16" (a config.json).
  std::string how = "rewritten";
};

struct Skipped {
  std::string name;
  std::string file;
  std::string rule;  // label with FILE:LINE
  std::string reason;
};

struct Plan {
  std::uint64_t model_parallel = 1;
  std::map<std::string, std::uint64_t> params;  // resolved, including mp
  // The words of each choice parameter (`--expert-dtype fp8`), whose value in `params` is an
  // index into them: the views show the word.
  std::map<std::string, std::vector<std::string>> param_choices;
  // Where each parameter's value came from (not mp): only when the rules read one from the
  // checkpoint's files (`from_config:`), so that other plans keep their bytes.
  std::map<std::string, rules::ParamSource> param_sources;
  std::string rules_name;  // the rules file's display name
  std::string input_root;
  std::vector<std::string> input_files;        // absolute paths, in name order
  std::vector<FileIdentity> input_identities;  // per input file, from the descriptor its header was read on
  std::vector<Source> sources;
  // The blocks holding the names of the sources and tensors the planner made (Name::borrowed):
  // shared by the copies of a plan, which keep them alive.
  std::shared_ptr<NameArena> name_arena;
  std::vector<Companion> companions;         // of the block-scaled transforms (few)
  std::vector<Composite> composites;         // of the fused outputs (PlannedTensor::composite)
  std::vector<RowPermutation> permutations;  // one per transform rule and head count (few)
  std::vector<OutputFile> outputs;           // one per rank, in rank order
  std::vector<Skipped> skipped;
  std::vector<std::string> side_files;             // present in the input, copied verbatim
  std::vector<FileIdentity> side_file_identities;  // per side file, when planned
  // Present in the input and not copied, as the rules say (`{NAME: drop}`): shown by the views.
  std::vector<std::string> dropped_side_files;
  // Whether the input's files may lead outside input_root (--allow-outside-links): checked again
  // when a side file is opened to be copied.
  OutsideLinks outside_links = OutsideLinks::refuse;
  OutputNaming naming = OutputNaming::per_rank;
  std::uint64_t max_shard_size = 0;            // hf: the limit of a file's tensor bytes; 0: mirrored files
  std::vector<GeneratedFile> generated_files;  // mirror: the index, when the input has one
  std::vector<std::string> rule_labels;        // "table[wq] (rules.yaml:12:5)", each rule once
  // What people must know besides the rows: counts taken from the checkpoint, ownership rules
  // exempt from the completeness check. Shown by the text and JSON views when not empty.
  std::vector<std::string> notes;
  std::uint64_t input_bytes = 0;
  std::uint64_t replicated_bytes = 0;  // bytes written more than once (copies beyond the first)
};

// The files written besides the rank files, as the manifest lists them: the side files, then the
// generated files.
std::vector<std::string> extra_file_names(const Plan& plan);

// Sources beyond the first chunk of each unfused input tensor (rules `unfuse:`): counts of input
// tensors leave them out.
std::size_t extra_chunk_sources(const Plan& plan);

// Where the plan writes, as the text views head it: "4 ranks (mp=4)", or for a mirrored plan
// "3 files mirroring the input's".
std::string outputs_heading(const Plan& plan);
// A parameter's value as the views show it: a choice's word (`fp8`), or the number.
std::string param_value_text(const Plan& plan, const std::string& name, std::uint64_t value);
// Every parameter as `name=value`, in name order, for the text views' `params:` line.
std::vector<std::string> param_assignments(const Plan& plan);
// Each parameter of param_sources with its value and source, for the text views' lines after
// `params:`: "heads = 32 (config.json: num_attention_heads)", "kv_heads = 8 (--kv-heads)".
std::vector<std::string> param_source_lines(const Plan& plan);

// Whether a cast turns quantised values into plain floats (the output's config.json then loses its
// quantisation_config, when the rules say `{config.json: dequantized}`).
inline bool dequantizes(Cast cast) { return cast == Cast::dequantize || cast == Cast::dequantize_packed; }

// The side files and generated files for the text views: "a, b, model.safetensors.index.json
// (rewritten), quantize_config.json (not copied)", or "none".
std::string extra_files_text(const Plan& plan);

}  // namespace shardwise::plan
