#pragma once
// The compiled form of a rules file, shared by the loader (which fills it) and the matcher
// (Rules::decide, which only reads it, from any number of threads).

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <shardwise/rules/rules.hpp>

#include "rules/accepts.hpp"
#include "rules/matcher.hpp"

namespace shardwise::rules {

enum class UnknownKeys { replicate, error };

// Each rule keeps the text its step adds to Decision::trail, formatted once at load time: decide()
// runs for every tensor of a checkpoint (hundreds of thousands) and must not format per name.
struct StripRule {
  std::string prefix;
  SourceLocation where;
  std::string trail;
};

// `normalize: {add_prefix: P, except: REGEX}`: P (any text, e.g. the two components "model.") is
// put before every name the regex does not match, searched in the name after strip_prefix and the
// component renames.
struct AddPrefixRule {
  std::string prefix;
  std::shared_ptr<const RE2> except;  // null: every name takes the prefix
  SourceLocation where;
  std::string trail;
};

struct RenameRule {
  std::string from;
  std::string to;
  SourceLocation where;
  std::string trail;
};

// What the ordered renames do to one component: its final spelling and the rules applied, in order.
struct RenameChain {
  std::string result;
  std::vector<std::size_t> applied;  // indices into Impl::renames
};

struct SkipRule {
  RuleRef rule;
  std::string reason;
  std::string trail;
  // `companion_of:` the tensor (by input name) whose transform reads the skipped one; unset: a
  // plain skip.
  std::optional<NameTemplate> companion_of;
};

// A tensor refused with a reason (`reject:`): a planning error, never a skip.
struct RejectRule {
  RuleRef rule;
  std::string reason;
  std::string trail;
};

// One entry of `tests:`: a tensor name, the mp and parameters to decide it with, what is expected.
struct RulesTest {
  SourceLocation where;
  std::string tensor;
  std::uint64_t mp = 1;
  Params params;  // as given, without mp
  // `config:` the text of the config.json its from_config parameters read; none: there is none.
  std::optional<std::string> config;
  std::optional<std::string> output;
  std::optional<std::vector<std::uint64_t>> ranks;  // sorted, unique
  bool all_ranks = false;                           // `ranks: all`
  std::optional<std::string> split;                 // out, in, replicate or whole
  std::optional<bool> skip;
  std::optional<bool> reject;
  std::optional<std::string> rule;                 // a label ("ownership[items]") or the name in it ("items")
  std::optional<std::string> transform;            // the transform rule's label or name, or "none"
  std::optional<std::string> fused;                // the fused output it is a part of (fuse:), or "none"
  std::optional<std::vector<std::string>> chunks;  // unfuse: the chunks' output names, in order
};

struct KeyRule {
  RuleRef rule;
  std::optional<std::string> literal;  // `key:`; otherwise the (?P<key>...) group
  int key_group = 0;                   // 1-based capture index of `key` when not literal
  std::string trail_suffix;            // "' from keys[x] (file:l:c)"
};

// `units: N` or `units: PARAM` of a table entry or override: the split dim's whole units (heads).
struct SplitUnits {
  std::uint64_t count = 0;  // when `param` is empty; 0: no units
  std::string param;
  bool given() const { return count != 0 || !param.empty(); }
};

struct TableEntry {
  RuleRef rule;
  std::optional<std::string> rename;
  Split split = Split::replicate;
  std::string trail;
  SplitUnits units{};
};

struct OverrideRule {
  RuleRef rule;
  Split split = Split::replicate;
  std::string trail;
  SplitUnits units{};
};

// A fuse rule compiled: the public FuseRule, the output template over the regex's named groups,
// and where the part and index groups are (structure.cpp).
struct CompiledFuse {
  FuseRule fuse;
  std::vector<std::string> fields;            // the regex's named groups, the template's placeholders
  std::vector<std::string_view> field_views;  // views of `fields`, which the template keeps
  std::vector<int> field_groups;              // their 1-based capture indices
  NameTemplate output;                        // parsed against `fields`
  int part_group = 0;                         // 1-based; 0 when absent
  int index_group = 0;
  std::string trail_suffix;  // " (file:l:c)"
};

struct CompiledUnfuse {
  UnfuseRule unfuse;
  std::vector<std::string> fields;
  std::vector<std::string_view> field_views;
  std::vector<int> field_groups;
  std::vector<NameTemplate> names;  // per chunk
};

struct OwnershipRule {
  RuleRef rule;
  std::string count_param;
  int index_group = 0;          // 1-based capture index of `index`
  bool count_inferred = false;  // the parameter says `default: infer`
  bool partial = false;         // `partial: true`
  std::string trail_suffix;     // " of n=N (file:l:c)" needs the value: only the location is kept
};

// Hashes std::string and std::string_view alike, so maps keyed by std::string can be searched
// with a view of a name (no string built per lookup).
struct TextHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
};

struct CompiledRules {
  std::string text;
  std::string display_name;
  std::vector<std::string> extends;  // display names of the files it builds on, parent first
  std::string name;
  std::string description;
  std::vector<ParamInfo> params;
  std::string output_file;     // empty when mirror_output
  NameTemplate output_names;   // output_file parsed; expands to "" when mirror_output
  bool mirror_output = false;  // `output: {mirror: true}`
  // `output: {layout: hf, max_shard_size: SIZE}` (docs/rules.md, "Hugging Face output"); a size of
  // 0 with hf_output: `mirror: true` beside `layout: hf` (one file per input file).
  bool hf_output = false;
  std::uint64_t max_shard_size = 0;
  std::vector<std::string> side_files;
  std::vector<SideFileRule> side_file_rules;
  UnknownKeys unknown_keys = UnknownKeys::error;
  SourceLocation unknown_keys_where;
  // The rules "unknown_keys[KEY]" that decisions point to, made by decide() on first use of KEY
  // (from any thread) and kept as long as the rules.
  struct UnknownKeyRules {
    std::mutex mutex;
    std::unordered_map<std::string, std::unique_ptr<const RuleRef>> by_key;
  };
  std::unique_ptr<UnknownKeyRules> unknown_key_rules = std::make_unique<UnknownKeyRules>();

  std::vector<StripRule> strip_prefixes;
  std::optional<AddPrefixRule> add_prefix;  // an extending file's replaces its parent's
  std::vector<RenameRule> renames;
  std::unordered_map<std::string, RenameChain, TextHash, std::equal_to<>>
      rename_chains;                 // by original component
  std::uint64_t rename_lengths = 0;  // bit min(length, 63) set for each key of rename_chains
  // The chain of a name component, or null. Most components are renamed by nothing: their length
  // alone says so, without hashing.
  const RenameChain* rename_chain(std::string_view component) const {
    if ((rename_lengths >> std::min<std::size_t>(component.size(), 63) & 1) == 0) return nullptr;
    const auto it = rename_chains.find(component);
    return it == rename_chains.end() ? nullptr : &it->second;
  }
  std::vector<RejectRule> rejects;
  detail::OrderedMatcher reject_matcher;
  std::vector<SkipRule> skips;
  detail::OrderedMatcher skip_matcher;
  std::vector<Layout> layouts;
  std::unordered_map<std::string, std::pair<std::size_t, std::size_t>, TextHash, std::equal_to<>>
      members;                                          // suffix -> layout, member
  std::vector<std::vector<std::string>> member_trails;  // per layout, per member
  std::vector<KeyRule> keys;
  detail::OrderedMatcher key_matcher;
  std::unordered_map<std::string, TableEntry> table;
  std::vector<std::string> table_order;  // keys as written, for messages and summaries
  std::vector<OverrideRule> overrides;
  detail::OrderedMatcher override_matcher;
  std::vector<OwnershipRule> ownership;
  detail::OrderedMatcher ownership_matcher;
  std::vector<RulesTest> tests;
  // Structure (structure.cpp): many-to-one outputs matched on output names, one-to-many on
  // normalized names. Held by unique_ptr: decisions point at their public parts.
  std::vector<std::unique_ptr<CompiledFuse>> fuses;
  detail::OrderedMatcher fuse_matcher;
  std::vector<std::unique_ptr<CompiledUnfuse>> unfuses;
  detail::OrderedMatcher unfuse_matcher;
  std::vector<TransformRule> transforms;
  std::vector<std::string> transform_trails;  // per transform rule
  detail::OrderedMatcher transform_matcher;
  // `accepts:` of the nearest file of the chain that has one (Accepts::of_rules); null: none.
  std::shared_ptr<const Accepts::Section> accepts;
};

// The pimpl of Rules is the compiled form itself.
struct Rules::Impl : CompiledRules {};

namespace detail {
// Formats the trail texts of every rule (see StripRule).
void format_trails(CompiledRules& rules);
// Parses and compiles `yaml`; throws one Error(rules) listing every problem found.
void load_rules(std::string_view yaml, const std::string& display_name, CompiledRules& out);
// Steps 5 onwards of decide() (packed member, key, table, ..., fuse) on d.normalized, recording
// into d.trail when `record`.
void decide_normalized(const CompiledRules& rules, Decision& d, const Params& params, bool record);
// Decide's structure steps (structure.cpp): the fused output of a placed tensor; the chunks of an
// unfused source (each then decided by `decide_rest`).
void apply_fuse(const CompiledRules& rules, Decision& d, std::vector<std::string>* trail);
bool apply_unfuse(const CompiledRules& rules, const Params& params, Decision& d, bool record,
                  std::string& why);

}  // namespace detail

}  // namespace shardwise::rules
