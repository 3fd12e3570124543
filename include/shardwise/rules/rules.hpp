#pragma once
// A rules file compiled for matching. All model knowledge (names, renames, splits, ownership,
// packed layouts, side files) comes from YAML; this code knows none of it. See docs/rules.md.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <shardwise/rules/name_template.hpp>
#include <shardwise/rules/param_sources.hpp>
#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::rules {

// Where a rule was written, for messages: "rules/model.yaml:42:5".
struct SourceLocation {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown
  int column = 0;
  std::string str() const;
};

// Which rule decided something, as plans and `explain` show it.
struct RuleRef {
  std::string label;  // e.g. "table[o_proj]", "skip[0]", "skip: NAME", "override[NAME]", "ownership[NAME]"
  SourceLocation where;
};

// How a tensor is spread over ranks, in terms of the logical weight [out, in].
enum class Split { replicate, out, in };
std::string_view split_name(Split split);

// One dim of a packed member, as a function of a logical dim: size = logical / divisor. The
// divisor is a number (`in/128`) or a parameter of the rules (`in/group_size`), whose value the
// planner takes from the parameters it plans with.
struct MemberDim {
  Split axis = Split::out;    // out or in (never replicate)
  std::uint64_t divisor = 1;  // when divisor_param is empty
  std::string divisor_param;  // the parameter that divides, or ""
};

struct LayoutMember {
  std::string suffix;  // last name component, e.g. "scales"
  // The member's shape: one dim (`[in]`, a per-input index or a bias) or two (one `out`, one `in`).
  std::vector<MemberDim> dims;
  std::vector<st::DType> allowed_dtypes;  // empty: any
  std::optional<st::DType> cast_to;       // written as this dtype
};

struct Layout {
  std::string name;
  std::vector<LayoutMember> members;
  SourceLocation where;
  const LayoutMember* find(std::string_view suffix) const;
};

// Parameters that rules refer to by name (`params:` in the file); `mp` is always present.
using Params = std::map<std::string, std::uint64_t, std::less<>>;

// A parameter as the rules file declares it (`params:`), for help texts and command-line flags.
struct ParamInfo {
  std::string name;
  // A choice parameter's accepted values (`--weight-format a|b`); its value in Params is the
  // index of the one given. Empty for a number.
  std::vector<std::string> choices;
  std::optional<std::uint64_t> default_value;  // none: it must be given (unless inferred)
  // `default: infer`: when not given, an ownership rule counting with it takes each scope's own
  // count from the checkpoint (docs/rules.md).
  bool inferred = false;
  std::string help;
  SourceLocation where;
  // `from_config:` where the checkpoint's own files give the value when no flag does, the first
  // key present winning; `map:` config values read as other values (param_sources.hpp).
  std::vector<ConfigKey> from_config;
  std::vector<ConfigMapEntry> config_map;
  // `range: [MIN, MAX]` of a number parameter: a value outside it is refused, from a flag (usage)
  // or from the checkpoint's files (input, naming the key). Unbounded when not given.
  std::uint64_t min = 0;
  std::uint64_t max = UINT64_MAX;
};

// What a parameter takes when not given, as help texts say it: "default: 64", "required",
// "default: infer", "from config.json num_attention_heads, else default: 4".
std::string param_default_text(const ParamInfo& param);

// Parameters resolved (Rules::resolve_params) and where each value came from.
struct ResolvedParams {
  Params values;                                            // with mp
  std::map<std::string, ParamSource, std::less<>> sources;  // every parameter of `values` but mp
};

// The value of `param` as given on the command line (`text`): a number, or for a parameter with
// choices one of them (its index). Error(usage) naming the flag and the accepted values.
std::uint64_t parse_param_value(const ParamInfo& param, std::string_view text);
// The value as people write it: the choice's word, or the number.
std::string param_value_text(const ParamInfo& param, std::uint64_t value);
// What a parameter's flag takes, as help texts show it: its choices ("bf16|f16"), or `number`
// ("UINT", "N") with the `range:` when it has one ("UINT in [1, 65536]").
std::string param_argument_text(const ParamInfo& param, std::string_view number);

// A transform applied to a placed tensor after its slice is taken (`transforms:`), chosen by the
// first rule whose regex matches the output name and whose `when:` holds (docs/rules.md):
// - reinterpret: the bytes unchanged, written as another dtype of the same or a smaller element
//   width (I8 [out, in/2] -> F4 [out, in]): the last dim grows by the ratio of the widths;
// - dequantize: a block-scaled weight (E4M3) times its block scale (the companion) -> BF16;
// - requantize: FP4 (I8 bytes) with E8M0 per-32 scales (the companion) -> E4M3 per 128x128;
// - requantize_scale: those per-32 scales -> the E8M0 per-128x128 scales of the requantized weight;
// - dequantize_packed: integer-packed codes (GPTQ v1/v2, AWQ GEMM) with their zeros, scales and
//   optional group index (the companions, all read from the checkpoint by input name) -> the
//   [out, in] weight in BF16 or F16, under the name `output` gives.
// - permute_rope: the rows (dim 0) reordered within each head between the two RoPE layouts, the
//   bytes and dtype unchanged (docs/rules.md, "Row permutations").
struct TransformRule {
  enum class Kind { reinterpret, dequantize, requantize, requantize_scale, dequantize_packed, permute_rope };
  // A number written in the rules, or the name of a parameter whose value it takes.
  struct Number {
    std::uint64_t value = 0;
    std::string param;  // "" for a literal
    std::uint64_t resolve(const std::map<std::string, std::uint64_t, std::less<>>& params) const;
    std::string text() const;
  };
  // dequantize's scale grid: `block: [r, c]` (numbers or parameters), per_channel ([out, 1]),
  // per_tensor ([1] or []), or infer: the block grid when the companion's shape is one, else
  // per-channel or per-tensor by the companion's shape.
  enum class Grid { block, per_channel, per_tensor, infer };
  // dequantize_packed's packing (docs/transforms.md, "GPTQ and AWQ").
  enum class Packing { gptq, gptq_v2, awq };
  // The order of a head's rows under rotary embeddings: `interleaved` pairs rows (2i, 2i+1) (Meta's
  // original layout), `half_split` pairs rows (i, i + head_dim/2) (Hugging Face's).
  enum class RopeOrder { interleaved, half_split };
  // Where the companion is looked up: among the tensors placed on the same rank, by output name
  // (consumed by a dequantization: not written), or among the input tensors, by input name.
  enum class Lookup { output, input };
  // A dequantization whose companion does not exist: a planning error, or the weight written
  // unchanged with a plan note.
  enum class Missing { error, keep };
  RuleRef rule;
  Kind kind = Kind::reinterpret;
  st::DType from = st::DType::U8;  // the dtype the source must have (reinterpret, requantize*)
  st::DType to = st::DType::U8;    // the dtype written
  // The companion's name: `{name}` is the tensor's name (output or input, per `lookup`), `{stem}`
  // that name without its last component (`{stem}.scale`, `{name}_scale`). requantize_scale:
  // its weight's name (checked to exist beside it, never read). Fields: kCompanionFields.
  NameTemplate companion;
  Lookup lookup = Lookup::output;
  Missing missing = Missing::error;
  std::uint64_t block_rows = 1;  // dequantize: weight rows x columns per scale entry
  std::uint64_t block_cols = 1;
  std::uint16_t nan_bits = 0xFFFF;  // dequantize: what a NaN becomes in BF16
  // dequantize `dtype:`: the weight dtypes it applies to, the others written unchanged (a listed
  // dtype other than F8_E4M3 is a planning error); empty: every weight must be F8_E4M3.
  std::vector<st::DType> dtypes;
  std::vector<std::pair<std::string, std::uint64_t>> when;  // parameter values that must all hold
  // dequantize: further companion templates, tried in order after `companion` (the first present
  // wins); the grid; the block as numbers or parameters (block_rows/block_cols when literal).
  std::vector<NameTemplate> companion_alternatives;
  Grid grid = Grid::block;
  Number grid_rows{1, {}};
  Number grid_cols{1, {}};
  // dequantize_packed: `companion` is the scales; the zeros and the optional group index (g_idx)
  // beside them, and the output name (`{stem}.weight`).
  Packing packing = Packing::gptq;
  Number bits{4, {}};
  Number group_size{128, {}};
  NameTemplate zeros;
  std::optional<NameTemplate> group_index;
  NameTemplate output;
  // permute_rope: the layout written (the source is in the other one), and the head count: a
  // number, or the parameter that gives it (`heads: n_kv_heads`) when heads_param is not empty.
  RopeOrder rope_to = RopeOrder::half_split;
  std::uint64_t heads = 0;
  std::string heads_param;
};

// "interleaved" or "half_split", as the rules write a RoPE layout.
std::string_view rope_order_name(TransformRule::RopeOrder order);

// What the rule does, in one line for plans, `explain` and `rules check`.
std::string describe_transform(const TransformRule& rule);

// The command-line flag of a rules parameter: `--` and the name, dashes for underscores
// (`n_items` -> `--n-items`).
std::string param_flag(std::string_view param);

// A tensor that belongs whole to one rank. Its *scope* is the output name up to the captured index
// (`blocks.3.mlp.items.`): the planner checks each scope against the count (docs/rules.md).
struct Ownership {
  std::uint64_t index = 0;  // captured from the name
  // The parameter's value: owner rank = index / (count / mp). None when the parameter is
  // inferred (`default: infer`) and was not given: each scope's own count, known to the planner.
  std::optional<std::uint64_t> count;
  std::string count_param;        // its name, for messages
  const RuleRef* rule = nullptr;  // owned by the Rules (see Decision::rule)
  // Decision::output is scope, index, rest: [0, index_begin), [index_begin, index_end), the rest.
  std::size_t index_begin = 0;
  std::size_t index_end = 0;
  // `partial: true`: a checkpoint may hold part of each scope (only the indices' range is checked).
  bool partial = false;
};

// A many-to-one output (`fuse:`, docs/rules.md "Fused and stacked outputs"): the placed tensors
// whose output name the rule matches are its parts, gathered on each rank after each was cut for
// that rank by its own rule. Each index's parts are concatenated along `dim` in the order of
// `parts`; with `stack`, the indices (the `(?P<index>...)` capture) are then stacked along a new
// dim 0, in index order.
struct FuseRule {
  RuleRef rule;
  std::vector<std::string> parts;  // the `(?P<part>...)` values, in order; empty: one unnamed part
  int dim = 0;
  bool stack = false;
};

// What a fuse rule says of one placed tensor: the fused output it is a part of.
struct FusePart {
  const FuseRule* rule = nullptr;  // owned by the Rules
  std::string output;              // the fused output's name
  std::size_t part = 0;            // index into rule->parts (0 when it has none)
  std::uint64_t index = 0;         // stack: the captured index
};

// A one-to-many output (`unfuse:`): the source tensor cut along `dim` into named chunks of
// relative sizes, each then decided as a tensor of its own name (keys, table, overrides, ...).
struct UnfuseRule {
  struct Chunk {
    std::string name;        // the chunk's name template as written (`{module}.q_proj.{param}`)
    std::uint64_t size = 1;  // relative size, when `size_param` is empty
    std::string size_param;  // the parameter giving it, or ""
  };
  RuleRef rule;
  int dim = 0;
  std::vector<Chunk> chunks;
};

struct Decision;

// One chunk of an unfused source: rows [begin, end) of `dim` in units of the source's size / total,
// decided as a tensor of its own name.
struct DecidedChunk {
  const UnfuseRule* rule = nullptr;
  std::size_t chunk = 0;    // index into rule->chunks
  std::uint64_t first = 0;  // relative sizes: this chunk is [first, first + size) of `total`
  std::uint64_t size = 0;
  std::uint64_t total = 0;
  std::unique_ptr<Decision> decision;
};

struct Decision {
  enum class Kind { place, skip, reject, unmatched };
  Kind kind = Kind::unmatched;
  std::string source;      // the input name
  std::string normalized;  // after prefix stripping and component renames
  std::string output;      // the output name (for a packed member: group + "." + suffix)
  std::string reason;      // skip, reject: the rule's reason; unmatched: why nothing matched
  // The rule that decided (skip, table entry, override, ...); null when unmatched. It belongs to
  // the Rules that decided, and lives as long as they do: one rule decides 100,000s of names.
  const RuleRef* rule = nullptr;
  std::optional<std::string> key;  // the key extracted, if any
  Split split = Split::replicate;  // ignored when owner is set
  std::optional<Ownership> owner;
  // `units:` of the deciding table entry or override: the split dim is made of this many equal
  // units (heads) that a split never cuts; fewer units than ranks puts each unit on mp / units
  // consecutive ranks. 0: none (plain split).
  std::uint64_t split_units = 0;
  std::string units_param;           // the parameter that gave split_units, for messages ("" for a number)
  std::optional<FusePart> fuse;      // a part of a fused output
  std::vector<DecidedChunk> chunks;  // unfuse: the source is these chunks, each decided alone
  const TransformRule* transform = nullptr;  // owned by the Rules, like `rule`; null: bytes as they are
  // A skip with `companion_of:`: the name template (over the input name) of the tensor whose
  // transform must read this one; owned by the Rules. Null otherwise.
  const NameTemplate* companion_of = nullptr;
  // Packed members: the layout, the member, and the group's output base name.
  const Layout* layout = nullptr;
  const LayoutMember* member = nullptr;
  std::string group;
  // Every step applied, in order, for `explain` ("strip prefix 'model.' (file:3:5)", ...); empty
  // when decide() was asked to omit it.
  std::vector<std::string> trail;
};

enum class OutputLayout { per_rank, mirror, hf };

// A `side_files:` entry that is not copied as it is (docs/rules.md, "Side files"): `{NAME: drop}`
// is never copied, even when a pattern matches it (a quantiser's own config file);
// `{NAME: dequantized}` is written as a checkpoint's config.json without its quantisation
// (st::dequantized_config_json, with the dtype of the dequantised tensors).
struct SideFileRule {
  enum class Action { drop, dequantized };
  std::string name;
  Action action = Action::drop;
};

class Rules {
 public:
  // Load and compile. Every problem of the file is reported in one Error(rules), each line as
  // `FILE:LINE:COL: message` (with a did-you-mean for misspelt keys).
  static Rules load_file(const std::string& path);
  static Rules load_text(std::string_view yaml, const std::string& display_name);
  // The default bundled rules (default_rules_name(), see rules/bundled.hpp).
  static Rules bundled();

  // Copies share the compiled rules, which nothing changes after loading.
  Rules(const Rules&);
  Rules& operator=(const Rules&);
  Rules(Rules&&) noexcept;
  Rules& operator=(Rules&&) noexcept;
  ~Rules();

  // Whether decide() records Decision::trail (for `explain`). Planning a checkpoint decides
  // 100,000s of names and reads only the outcome: the trail would be most of the work.
  enum class Trail { record, omit };

  // Decide what happens to one input tensor. Thread-safe. `params` must hold every parameter the
  // rules use (see resolve_params).
  Decision decide(std::string_view name, const Params& params, Trail trail = Trail::record) const;
  // decide(name, params, Trail::omit) into `out`, whatever it held before: the same decision, with
  // `out`'s strings reused. Deciding 100,000s of names into a few Decisions allocates nothing once
  // their strings have grown (planning: DecisionStream).
  void decide_into(std::string_view name, const Params& params, Decision& out) const;

  // Every parameter's value, from `given` (the command line: flags and --param), else from the
  // checkpoint's files (`from_config:`, read from `config`), else the default. Unknown names in
  // `given`, a given value that contradicts the checkpoint's and a parameter that nothing gives
  // are an Error(usage); a config value that is not one the parameter takes, an Error(input).
  // Every caller that plans, verifies, explains or reshards resolves through this one function.
  ResolvedParams resolve_params(const Params& given, const ConfigFiles& config,
                                ParamSource::Kind given_as = ParamSource::Kind::flag) const;
  // The same without a checkpoint (every from_config key absent), the values only.
  Params resolve_params(const Params& given) const;

  const std::string& name() const;          // the file's `name:`
  const std::string& description() const;   // the file's `description:`, or ""
  const std::string& display_name() const;  // the path as given, or "<bundled>/x.yaml"
  // The YAML as loaded, followed by that of every file it extends (hashed into manifests).
  const std::string& text() const;
  std::string output_file(std::uint64_t rank, std::uint64_t mp) const;  // from `output.file`
  const std::string& output_file_pattern() const;    // `output.file` as written ({rank}, {mp})
  const NameTemplate& output_file_template() const;  // `output.file` parsed (kOutputFileFields)
  // `output: {mirror: true}`: one output per input file, under the input file's name, and the
  // input's index rewritten (docs/rules.md, "Mirrored output"); output_file() is then "".
  bool mirrors_input() const;
  // How the rules name the outputs: rank files (`file:`), the input's files (`mirror: true`), or
  // Hugging Face's layout (`layout: hf`): no ranks, files as save_pretrained names them.
  OutputLayout output_layout() const;
  // `layout: hf`: the rules' max_shard_size in bytes (transformers' 5GB when not given), or 0 when
  // they say `mirror: true` beside it (one file per input file).
  std::uint64_t max_shard_size() const;
  const std::vector<std::string>& side_files() const;  // copied: names and shell patterns
  const std::vector<SideFileRule>& side_file_rules() const;
  const std::vector<Layout>& layouts() const;
  const std::vector<ParamInfo>& params() const;  // as declared, without the built-in `mp`
  // A few lines for people: name, rule counts per section, layouts, parameters, outputs
  // (`shardwise rules check`).
  std::string summary() const;

  // For `explain`: when the tensor `decision` places is the block scale a dequantization reads
  // and does not write, that transform and its weight's output name. Found from the name alone:
  // the transform's companion template inverted on decision.output (for `{stem}`, the weight's last
  // name component tried from the words of the transform's pattern), the weight then decided.
  struct Consumer {
    const TransformRule* transform = nullptr;
    std::string weight;
  };
  std::optional<Consumer> consumer_of(const Decision& decision, const Params& params) const;

  // The file's own `tests:` (not those of the files it extends), each decided with its mp and
  // parameters and compared with what it expects. Every failure is one line,
  // `FILE:LINE:COL: test 'NAME' (mp=4, ...): WHAT: expected X, the rules decide Y (deciding rule: ...)`.
  struct TestReport {
    std::size_t run = 0;
    std::vector<std::string> failures;
  };
  TestReport run_tests() const;

 private:
  friend class Accepts;  // the `accepts:` section read when loading (Accepts::of_rules)
  struct Impl;
  explicit Rules(std::unique_ptr<Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// An output file pattern (`output.file`, e.g. as a manifest records it) with {rank} and {mp} filled
// in. A pattern that is not a valid template (a damaged manifest's) is an Error(input).
std::string expand_output_file(std::string_view pattern, std::uint64_t rank, std::uint64_t mp);

}  // namespace shardwise::rules
