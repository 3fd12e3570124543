#pragma once
// The plan: where every input byte goes. Computed from headers alone; the single source of truth
// that `convert` executes and `verify` checks.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <shardwise/core/file_identity.hpp>
#include <shardwise/safetensors/dtype.hpp>

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
enum class Cast { none, f16_to_bf16, f32_to_bf16, reinterpret };

struct Source {
  std::size_t file = 0;       // index into Plan::input_files
  std::string name;           // the input tensor's name
  st::DType dtype;
  st::Shape shape;
  std::uint64_t offset = 0;   // absolute offset of its first byte in the input file
  std::uint64_t bytes = 0;
};

struct PlannedTensor {
  std::string name;           // output name
  st::DType dtype;            // as written
  st::Shape shape;            // as written
  std::uint64_t bytes = 0;    // as written
  std::size_t source = 0;     // index into Plan::sources
  Slice slice;
  Cast cast = Cast::none;
  std::size_t rule = 0;       // index into Plan::rule_labels: the rule that placed it
};

struct OutputFile {
  std::uint64_t rank = 0;
  std::string file;                     // name within the output folder
  std::vector<PlannedTensor> tensors;   // sorted by output name
  std::uint64_t bytes = 0;              // tensor bytes (header excluded)
};

// How the outputs are named (the rules' `output:`). `per_rank`: OutputFile i is rank i of
// model_parallel. `mirror`: OutputFile i holds the tensors of input file i, under that file's name,
// each whole; model_parallel then counts the output files (one per input file) and a "rank" is an
// output file's position (--ranks, --distributed and the manifest count files so).
enum class OutputNaming { per_rank, mirror };

// A file whose content the plan computes (a mirrored plan's rewritten index). Written with the side
// files, by the run that writes rank 0, and recorded in the manifest as a side file.
struct GeneratedFile {
  std::string file;           // name within the output folder
  std::string content;
  std::string from;           // the input file it is computed from, name within the input folder
  FileIdentity from_identity; // of that file when the plan read it
};

struct Skipped {
  std::string name;
  std::string file;
  std::string rule;    // label with FILE:LINE
  std::string reason;
};

struct Plan {
  std::uint64_t model_parallel = 1;
  std::map<std::string, std::uint64_t> params;  // resolved, including mp
  std::string rules_name;                       // the rules file's display name
  std::string input_root;
  std::vector<std::string> input_files;         // absolute paths, in name order
  std::vector<FileIdentity> input_identities;   // per input file, from the descriptor its header was read on
  std::vector<Source> sources;
  std::vector<OutputFile> outputs;              // one per rank, in rank order
  std::vector<Skipped> skipped;
  std::vector<std::string> side_files;          // present in the input, copied verbatim
  std::vector<FileIdentity> side_file_identities;  // per side file, when planned
  OutputNaming naming = OutputNaming::per_rank;
  std::vector<GeneratedFile> generated_files;   // mirror: the index, when the input has one
  std::vector<std::string> rule_labels;         // "table[wq] (rules.yaml:12:5)", each rule once
  // What people must know besides the rows: counts taken from the checkpoint, ownership rules
  // exempt from the completeness check. Shown by the text and JSON views when not empty.
  std::vector<std::string> notes;
  std::uint64_t input_bytes = 0;
  std::uint64_t replicated_bytes = 0;           // bytes written more than once (copies beyond the first)
};

// The files written besides the rank files, as the manifest lists them: the side files, then the
// generated files.
std::vector<std::string> extra_file_names(const Plan& plan);

// Where the plan writes, as the text views head it: "4 ranks (mp=4)", or for a mirrored plan
// "3 files mirroring the input's".
std::string outputs_heading(const Plan& plan);
// The side files and generated files for the text views: "a, b, model.safetensors.index.json
// (rewritten)", or "none".
std::string extra_files_text(const Plan& plan);

}  // namespace shardwise::plan
