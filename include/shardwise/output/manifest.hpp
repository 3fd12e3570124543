#pragma once
// `shardwise-manifest.json`: what a conversion wrote, beside its outputs. It names the rules (and
// their hash), the input headers' hash and the parameters, so a later run can tell whether the
// plan changed, and holds XXH3-64 checksums of every output file, tensor and side file.
//
// A manifest with "complete": false is written before any output, listing the planned files
// without checksums: files of an interrupted run stay recognisably shardwise's own. As each file
// is finished its checksums are added, so a resumed run knows which files it can keep. Runs that
// write part of the output (--ranks, --distributed) keep fragments `shardwise-manifest.<key>.json`
// in the same format, listing only the files they finished (docs/distributed.md).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <shardwise/core/file_identity.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::output {

inline constexpr const char* kManifestFileName = plan::kManifestFileName;
inline constexpr const char* kToolVersion = "shardwise 0.1.0";
// 2: "input" lists every input file with what it looked like when the run planned it (version 1
// manifests, still read, have no such list).
// 3: what `reshard` needs: the rules' output file pattern and text, and per tensor its dtype,
// shape and cut (version 1 and 2 manifests, still read, have none of it: docs/reshard.md).
// 4: a choice parameter recorded by its word ("expert_dtype": "fp8"); older manifests, still
// read, record its index (1).
// 5: what `convert --reverse` needs: per tensor what it was made from when the conversion changed
// its name, dtype or shape or reordered its rows ("from"), and the rules that dropped tensors
// ("skipped"). Older manifests are still read; a folder they describe cannot be reversed.
// 6: what reversing fused outputs and unfused chunks needs: each part of a fused output its own
// "from", and a chunk's "from" the rows of its source it is ("within") with the source's whole
// shape. Version 5 manifests are still read; their fused outputs and chunks cannot be reversed.
inline constexpr int kManifestVersion = 6;

struct RulesIdentity {
  std::string name;        // the rules file's `name:`
  std::uint64_t xxh3 = 0;  // XXH3-64 of the rules text as loaded
  // Version 3, recorded for reshard, never compared (xxh3 stands for the text): the rules'
  // `output.file` pattern and the text itself (empty in older manifests).
  std::string output_file{};
  std::string text{};
};

// What a written tensor was made from (version 5), recorded when the conversion changed its name,
// dtype or shape or reordered its rows, so that `convert --reverse` can write the source back.
struct TensorOrigin {
  std::string name;  // the source tensor's name
  st::DType dtype;   // the source's dtype and whole shape
  st::Shape shape;
  // The rows were permuted (rules permute_rope): the order written and the head count.
  std::optional<plan::RowPermutation> rows{};  // its `rule` is not recorded (0)
  // A step whose result does not give its source back (a cast that rounds, a dequantisation):
  // what it did and the rule, e.g. "cast F16 -> BF16 by table[wq] (rules.yaml:12:5)"; empty: none.
  std::string irreversible{};
  // A chunk of an unfused source (rules `unfuse:`, version 6): the rows [begin, end) of the
  // source's dim 0 that it is (`shape` is the whole source's); whole otherwise.
  plan::Slice within{};
};

// How a written tensor relates to its logical tensor (the output as mp=1 writes it).
struct TensorCut;
// A fused output (placement composite, rules `fuse:`): its parts in order, each with its own
// output name and cut, and how they were put together (plan::Composite): enough to undo it.
struct CompositeCut {
  int dim = 0;
  bool stacked = false;
  std::uint64_t per_block = 1;
  std::vector<std::uint64_t> indices;  // stacked: each block's index
  std::vector<std::pair<std::string, TensorCut>> parts;
  // Version 6: each part's origin, as for a tensor written alone (nullopt: the part is its source
  // under its own name); the same length as `parts`.
  std::vector<std::optional<TensorOrigin>> origins{};
};

struct TensorCut {
  st::DType dtype;
  st::Shape shape;  // as written
  plan::Placement placement;
  std::uint64_t begin = 0;  // split: this rank's range [begin, end) of dim placement.dim
  std::uint64_t end = 0;
  std::uint64_t size = 0;                           // split: the logical tensor's size along that dim
  std::shared_ptr<const CompositeCut> composite{};  // placement composite
};

// A tensor's origin as the plan makes it: nullopt when the output is the source itself under its
// own name (a slice of it, or all of it), and for a fused output (its parts' are in its cut).
std::optional<TensorOrigin> origin_of(const plan::Plan& plan, const plan::PlannedTensor& tensor);

struct ManifestTensor {
  std::string name;
  std::uint64_t xxh3 = 0;                // of the tensor's bytes as written
  std::optional<TensorCut> cut{};        // version 3; absent in older manifests
  std::optional<TensorOrigin> origin{};  // version 5; absent when the output is its source
};

// Tensors a rule dropped (skip), summed per rule (version 5): what stops `convert --reverse`.
struct ManifestSkip {
  std::string rule;  // its label with FILE:LINE:COL
  std::uint64_t count = 0;
  std::string first;  // the first tensor's name
};

// The cut of a planned tensor written to a file of rank `rank` of `mp`.
TensorCut cut_of(const plan::PlannedTensor& tensor, std::uint64_t rank, std::uint64_t mp);
// The same, for any tensor of `plan`: a fused output's cut lists its parts' (plan.composites), with
// their origins (origin_of).
TensorCut cut_of(const plan::Plan& plan, const plan::PlannedTensor& tensor, std::uint64_t rank);

// The fields below `file` hold values only in a complete manifest or when `finished`.
struct ManifestOutput {
  std::uint64_t rank = 0;
  std::string file;
  std::uint64_t bytes = 0;              // the whole file's size
  std::uint64_t xxh3 = 0;               // of the whole file
  std::vector<ManifestTensor> tensors;  // in output-name order
  bool finished = false;                // an incomplete manifest's entry that has its checksums
};

struct ManifestSideFile {
  std::string file;
  std::uint64_t xxh3 = 0;
  bool finished = false;  // as for ManifestOutput
};

// An input file (tensor file or side file) as the run that wrote the manifest planned it, and
// found it again unchanged before it vouched for its outputs.
struct ManifestInput {
  std::string file;  // its name in the input folder
  FileIdentity identity;
};

struct Manifest {
  bool complete = false;
  std::string tool = kToolVersion;
  RulesIdentity rules;
  std::uint64_t input_headers_xxh3 = 0;
  std::vector<ManifestInput> inputs;  // empty in a version 1 manifest, which did not record them
  std::map<std::string, std::uint64_t> params;
  std::vector<ManifestOutput> outputs;  // in rank order
  std::vector<ManifestSideFile> side_files;
  // Choice parameters by their word (`--expert-dtype fp8`: "fp8"), as the file records them since
  // version 4; `params` holds the others (and, read from an older file, a choice's index).
  std::map<std::string, std::string> choices{};
  // Not written: the words of each choice parameter, from the plan, so that an older file's index
  // reads as its word when compared (plan_changes).
  std::map<std::string, std::vector<std::string>> choice_words{};
  // "hf" for Hugging Face's layout (written as "output": {"layout": "hf", "max_shard_size": N}, only
  // then), with its max shard size (0: one file per input file); "" for rank files and mirrored
  // files, which the rules' output file pattern tells apart.
  std::string output_layout{};
  std::uint64_t max_shard_size = 0;
  // Where each parameter's value came from ("config.json: num_attention_heads", "--heads",
  // "default"), when the rules read one from the checkpoint's files (plan.param_sources): for
  // people; written only when not empty, and no reader depends on it.
  std::map<std::string, std::string> param_sources{};
  // Version 5: what the conversion dropped, per rule (empty: nothing); and whether the tensors'
  // origins are recorded ("origins": true; a folder resharded from an older manifest has none), so
  // that `convert --reverse` can tell a tensor that is its source from one whose origin is unknown.
  std::vector<ManifestSkip> skipped{};
  bool origins = false;
  // The version the file was written with (kManifestVersion for a manifest made in memory).
  std::uint64_t version = kManifestVersion;
};

// Records `values` in `manifest`: a parameter with words in `words` (a choice) by its word, the
// others as numbers.
void set_params(Manifest& manifest, const std::map<std::string, std::uint64_t>& values,
                const std::map<std::string, std::vector<std::string>>& words);

// Every parameter as text: a choice's word (an index of an older manifest translated with `words`
// when they have it), a number in decimal.
std::map<std::string, std::string> param_texts(const Manifest& manifest,
                                               const std::map<std::string, std::vector<std::string>>& words);

// XXH3-64 over every input file's name (without folder) and header bytes (length prefix and
// JSON), in plan order: changes when the input's tensors, dtypes, shapes or layout change.
std::uint64_t input_headers_xxh3(const plan::Plan& plan);

// The manifest a conversion of `plan` starts with: planned files, no checksums.
Manifest provisional_manifest(const plan::Plan& plan, const RulesIdentity& rules, std::uint64_t headers_xxh3);

nlohmann::ordered_json manifest_to_json(const Manifest& manifest);
// Throws Error(input) naming `where` when `json` is not a manifest this version understands.
Manifest manifest_from_json(const nlohmann::ordered_json& json, const std::string& where);

// Its fields without the output and side file entries (which hold every tensor).
Manifest without_entries(const Manifest& manifest);

// The manifest as written: manifest_to_json's content, one tensor per line. The second form hands
// the text to `sink` in parts (a tensor line at a time), never holding all of it.
std::string format_manifest(const Manifest& manifest);
void format_manifest(const Manifest& manifest, const std::function<void(std::string_view)>& sink);
// The same text in its parts, which format_manifest joins with a comma between output entries: the
// head (every field before the output entries, up to `"outputs": [`), one output entry (with its
// tensors when `checksums`, see has_checksums; to `sink` a tensor line at a time) and the tail
// (`]` and the side files). A run keeps its finished entries as this text rather than as objects.
std::string format_manifest_head(const Manifest& manifest);
void format_output_entry(const ManifestOutput& entry, bool checksums,
                         const std::function<void(std::string_view)>& sink);
// An output entry's tensors made one at a time, `tensor(i)` for i < count, as its text is written:
// a file's 10,000s of tensors are then never held as objects at once.
struct TensorLines {
  std::size_t count = 0;
  std::function<ManifestTensor(std::size_t)> tensor;
};
// The entry with its checksums, its tensors from `tensors` (entry.tensors not read).
void format_output_entry(const ManifestOutput& entry, const TensorLines& tensors,
                         const std::function<void(std::string_view)>& sink);
std::string format_manifest_tail(const Manifest& manifest);
// An entry with its checksums in three parts, for text assembled from tensor lines kept elsewhere:
// its opening (up to `"tensors": [`), each tensor's line (`first` for the entry's first) and its
// closing. Together, what format_output_entry writes.
std::string format_entry_opening(const ManifestOutput& entry);
void format_tensor_line(std::string& text, const ManifestTensor& tensor, bool first);
inline constexpr std::string_view kEntryClosing = "]}";

// True when the entry's checksums are known: the manifest is complete or the entry finished.
inline bool has_checksums(const Manifest& manifest, const ManifestOutput& entry) {
  return manifest.complete || entry.finished;
}
inline bool has_checksums(const Manifest& manifest, const ManifestSideFile& entry) {
  return manifest.complete || entry.finished;
}

// What makes a manifest's list of files unusable, one line each (empty: none): no output file; the
// parameter mp missing, 0 or beyond plan::kMaxModelParallel; not exactly one entry per rank 0..mp-1
// in rank order (a mirrored output, mp=1 and no file pattern: one entry per file, in order); a
// file listed twice; with the rules' output file pattern, a rank file under another name. The
// one check of `verify --manifest-only` and `reshard` (which refuses a manifest with any).
std::vector<std::string> file_list_problems(const Manifest& manifest);

// Reads `<folder>/shardwise-manifest.json`: nullopt when there is none; Error(input) naming the
// path when it is not a valid manifest.
std::optional<Manifest> read_manifest(const std::string& folder);
// Reads a manifest-format file, e.g. a fragment: nullopt when there is none; Error(input) naming
// the path when it is not a valid manifest.
std::optional<Manifest> read_manifest_file(const std::string& path);
// The same without holding the tensors' entries (a full-size model's take 100s of MB as objects):
// each goes to `visitor.tensor` as it is read, with the index of its output entry and that entry's
// file name, and the manifest returned has every other field (no output lists tensors). A file
// whose text is unusual (keys in another order or twice, ...) is read whole after all:
// `visitor.restart` is called, then every tensor is handed over again from the first. What was
// handed over counts only when the manifest is returned: an invalid one throws as above.
struct TensorVisitor {
  std::function<void(std::size_t output, const std::string& file, ManifestTensor&& tensor)> tensor;
  std::function<void()> restart{};
};
std::optional<Manifest> read_manifest(const std::string& folder, const TensorVisitor& visitor);
std::optional<Manifest> read_manifest_file(const std::string& path, const TensorVisitor& visitor);
// The manifest's fields and file lists, its tensors' entries read and dropped.
std::optional<Manifest> read_manifest_without_tensors(const std::string& folder);
// Writes it under a temporary name, then renames it into place. `writer` names the temporary
// (`.shardwise-manifest.json.<writer>.partial`) so that processes completing the same manifest at
// once never share one; empty: `.shardwise-manifest.json.partial`.
void write_manifest(const std::string& folder, const Manifest& manifest, const std::string& writer = "");

// What differs between the plans two manifests describe (rules, input headers, parameters), one
// phrase each, e.g. "the parameter mp changed: 4 -> 8". Empty when the plans are the same, and so
// are the bytes they write. Choices compare by their words ("fp4 -> fp8"), an older manifest's
// index read with the words of `shown` or, without it, of `now` (Manifest::choice_words).
std::vector<std::string> plan_changes(const Manifest& before, const Manifest& now,
                                      const plan::Plan* shown = nullptr);

}  // namespace shardwise::output
