#pragma once
// What `rules scaffold` learns from a checkpoint's headers, step by step: names split into
// components with their keys and indexed scopes (names.cpp), modules with their packed groups and
// logical weights (modules.cpp), a split per key (splits.cpp). The YAML is written from these in
// scaffold.cpp. Internal to src/scaffold/.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/rules/rules.hpp>
#include <shardwise/scaffold/scaffold.hpp>

namespace shardwise::scaffold {

// The rules vocabulary the draft is written in.
using rules::Layout;
using rules::LayoutMember;
using rules::MemberDim;
using rules::Split;

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

// A generalised path: components joined by '.', every index component replaced by this marker
// (names holding control characters are refused, so it cannot clash with a real component).
inline constexpr char kIndexMarker = '\x01';

// A component that is an index (blocks.N, items.M): 1 to 9 decimal digits, so that it always
// parses as an ownership index.
bool is_index(std::string_view part);
// The RE2 pattern matching exactly the names a generalised path stands for.
std::string path_regex(std::string_view generalised);
// The generalised path as people read it (indices as N).
std::string path_text(std::string_view generalised);

struct Name {
  std::vector<std::string_view> parts;
  std::string_view parent;   // the name without its last component; empty for one component
  std::string_view key;      // the table key the draft gives it
  bool bare = false;         // a parameter, not a module's tensor: its own last component is the key
  std::size_t scope = npos;  // the indexed scope that owns it (index into Names::scopes)
};

// Parameters (bare tensors) under one generalised parent path: one keys rule each.
struct ParameterGroup {
  std::string parent;               // generalised; empty for top-level names
  std::vector<std::string> leaves;  // sorted, distinct
};

// Indexed scopes turned into ownership, one per collection name: `PARENT.COLLECTION.<index>` where
// PARENT is itself inside an indexed scope (items in a block, not the blocks) and has other
// children beside the collection (a router, a shared module).
struct Scope {
  std::string collection;          // e.g. "items"
  std::vector<std::string> paths;  // the collection's generalised paths, e.g. "blocks.\1.mlp.items"
  std::uint64_t count = 0;         // largest index seen + 1
  std::uint64_t instances = 0;     // concrete collections (one per layer, say)
  std::uint64_t fewest = 0;        // fewest distinct indices in one of them
  std::string param;               // the count's parameter name
  bool loose = false;              // every `COLLECTION.<index>` in the checkpoint is one of `paths`
};

struct Names {
  // The packed triple's suffixes (weight, zeros, scales), from ScaffoldOptions::packed.
  std::array<std::string, 3> packed;
  std::vector<Name> names;  // same order as the input
  std::vector<ParameterGroup> parameters;
  std::vector<Scope> scopes;
};

// Throws Error(input) listing every name that has an empty component or a control character.
Names analyse_names(std::span<const TensorHeader> tensors);

enum class PackKind { gptq, awq };

// A packed layout found: weight / zeros / scales triples with one set of factors.
struct Packing {
  PackKind kind = PackKind::gptq;
  std::uint64_t pack = 0;            // values per packed element
  std::uint64_t group = 0;           // quantisation group size (input rows per scale)
  std::vector<st::DType> dtypes[3];  // per member, in Names::packed order, sorted
  std::uint64_t groups = 0;          // how many triples
  std::string example;               // the first triple's module path
  std::string name;                  // the layout's name in the draft
};

// The tensors directly under one module path (bare parameters excluded).
struct Module {
  std::string_view path;
  std::string_view key;
  std::vector<std::size_t> tensors;  // input indices, in input order
  bool owned = false;                // inside an indexed scope turned into ownership
  std::size_t packing = npos;        // index into Modules::packings when it is a packed triple
  std::size_t main = npos;           // plain: the largest tensor of 2 or more dims
  std::uint64_t out = 0;             // the logical weight [out, in]; 0 when there is none
  std::uint64_t in = 0;
  bool has_weight() const { return out != 0; }
};

// FP8 weights with a block-scale tensor beside them, for the draft's comments.
struct BlockScales {
  st::DType dtype = st::DType::F8_E4M3;
  std::uint64_t pairs = 0;
  std::uint64_t block = 0;  // 0 when the pairs disagree
  std::string example;      // "NAME [..] + NAME [..]"
};

struct Modules {
  std::vector<Module> modules;  // in order of first tensor
  std::vector<Packing> packings;
  std::vector<BlockScales> block_scales;
};

// Throws Error(input) listing every triple that fits no packing, triples whose factors differ,
// and tensors with a packed suffix outside any triple.
Modules find_modules(std::span<const TensorHeader> tensors, const Names& names);

// One table row.
struct KeyRow {
  std::string key;
  Split split = Split::replicate;
  std::string comment;
  std::vector<std::string> replicated_leaves;  // overrides: KEY.LEAF is replicated (sorted)
  std::vector<std::string> leaf_reasons;       // one per replicated leaf
};

// A split per key, in order of first appearance, guessed for `mp` ranks.
std::vector<KeyRow> guess_splits(std::span<const TensorHeader> tensors, const Names& names,
                                 const Modules& modules, std::uint64_t mp);

}  // namespace shardwise::scaffold
