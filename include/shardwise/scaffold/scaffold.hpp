#pragma once
// A draft rules file for a checkpoint, from its headers alone (`shardwise rules scaffold`). Its own
// module beside the rules compiler: it writes rules text, it does not load it.
// It knows tensor formats and shapes, never model names: packed groups are recognised by their
// member suffixes and shape ratios, indexed scopes by the numbers in names, splits guessed from
// shapes. Every guess is marked in a comment; a person reads the draft, then edits it.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/rules/rules.hpp>
#include <shardwise/rules/tensor_header.hpp>
#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::scaffold {

// A tensor as its header describes it (rules/tensor_header.hpp), the scaffold's input.
using rules::TensorHeader;

// The member suffixes of a packed (GPTQ / AWQ) triple: the packed weight, the packed zero points and
// the scales. They are model knowledge, taken from a rules file's layout (packed_suffixes_of).
struct PackedSuffixes {
  std::string weight;
  std::string zeros;
  std::string scales;
};

// The suffixes of `layout` when it is a packed triple: three 2-D members, the zeros packed along
// `out` (out divisor > 1), the weight the member with the smaller `in` divisor, the scales the
// other. Nullopt for any other layout.
std::optional<PackedSuffixes> packed_suffixes_of(const rules::Layout& layout);

struct ScaffoldOptions {
  PackedSuffixes packed;       // the suffixes that make a packed triple (required)
  std::string name = "draft";  // the draft's `name:`
  std::string source;          // the checkpoint, as the draft's first comment names it
  // The model-parallel size the splits are guessed for: a split is proposed only where every
  // tensor of the key divides by it (packing units, quantisation groups and scale blocks intact).
  std::uint64_t model_parallel = 8;
  std::vector<std::string> side_files;  // plain file names, listed under `side_files:`
};

// The draft as YAML text. With the default parameters (mp = 1) it loads with
// rules::Rules::load_text and plans the checkpoint it was made from; its splits also divide at
// options.model_parallel.
// Throws Error(input), listing every problem, when the checkpoint cannot be described: a name with
// an empty component or a control character, a packed group whose shapes fit no known packing,
// groups of one packing whose factors differ (a suffix belongs to one layout), a tensor with a
// packed suffix outside any group.
std::string scaffold_rules(std::span<const TensorHeader> tensors, const ScaffoldOptions& options);

}  // namespace shardwise::scaffold
