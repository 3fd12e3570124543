#include "rules/loader.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/decimal.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/rules/name_template.hpp>
#include <shardwise/safetensors/hf_shards.hpp>

#include <shardwise/rules/suggest.hpp>

namespace shardwise::rules::detail {

namespace {

bool is_identifier(const std::string& text) {
  if (text.empty() || (std::isdigit(static_cast<unsigned char>(text[0])) != 0)) return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c == '_' || std::isalnum(static_cast<unsigned char>(c)) != 0; });
}

// A file name written next to the outputs: never a path, so a rules file cannot point outside.
bool is_plain_file_name(const std::string& text) {
  return !text.empty() && text != "." && text != ".." && text.find_first_of("/\\") == std::string::npos &&
         text.find('\0') == std::string::npos;
}

// `output.file`: a template of {rank} (required) and {mp}, a plain file name.
std::optional<NameTemplate> read_output_template(YamlReader& in, const YAML::Node& node,
                                                 const std::string& pattern) {
  NameTemplate::Parsed parsed =
      NameTemplate::parse(pattern, kOutputFileFields, fmt::format("output file '{}'", pattern));
  if (!parsed.name_template) {
    in.error(node, parsed.error);
    return std::nullopt;
  }
  if (!parsed.name_template->uses(kRankField)) {
    in.error(node,
             fmt::format("output file '{}' must contain {{rank}}: every rank needs its own file", pattern));
  }
  if (!is_plain_file_name(pattern))
    in.error(node, fmt::format("output file '{}' must be a plain file name, not a path", pattern));
  return parsed.name_template;
}

// Remembers the regexes of one list, so that a rule identical to an earlier one is reported.
class DuplicateRules {
 public:
  explicit DuplicateRules(std::string list) : list_(std::move(list)) {}
  void check(YamlReader& in, const YAML::Node& node, const std::string& pattern) {
    const auto [it, fresh] = seen_.emplace(pattern, in.where(node));
    if (!fresh) {
      in.error(node,
               fmt::format("{} rule never decides anything: its match is identical to the rule at {}:{}",
                           list_, it->second.line, it->second.column));
    }
  }

 private:
  std::string list_;
  std::map<std::string, SourceLocation> seen_;
};

std::string rule_label(const std::string& list, const std::optional<std::string>& name, std::size_t index) {
  return name ? fmt::format("{}[{}]", list, *name) : fmt::format("{}[{}]", list, index);
}

// The parts shared by every regex rule: `name`, `match` (compiled into `matcher`). Returns the
// compiled regex, or nullptr when `match` is missing or invalid (already reported).
const RE2* read_match(YamlReader& in, const YAML::Node& item, const std::string& what,
                      OrderedMatcher& matcher, DuplicateRules& duplicates) {
  const auto pattern = in.string_field(item, "match", what, true);
  if (!pattern) return nullptr;
  const YAML::Node node = YamlReader::field(item, "match");
  if (auto error = matcher.add(*pattern)) {
    in.error(node, fmt::format("invalid regex '{}' in {}: {}", *pattern, what, *error));
    return nullptr;
  }
  duplicates.check(in, node, *pattern);
  return &matcher.pattern(matcher.size() - 1);
}

int named_group(const RE2& re, const std::string& group) {
  const auto& groups = re.NamedCapturingGroups();
  const auto it = groups.find(group);
  return it == groups.end() ? 0 : it->second;
}

// `partial: true|false` of an ownership rule (false when absent).
bool read_partial(YamlReader& in, const YAML::Node& rule) {
  const YAML::Node node = YamlReader::field(rule, "partial");
  if (!node.IsDefined()) return false;
  const auto text = in.string_value(node, "'partial' of ownership rule");
  if (text == "true") return true;
  if (text && *text != "false")
    in.error(node, fmt::format("'partial' of ownership rule must be true or false, got '{}'", *text));
  return false;
}

// `output: {file: PATTERN}` (one file per rank) or `output: {mirror: true}` (one output per input
// file, under its name, and the input's index rewritten): exactly one of them. An extending file's
// `output` replaces its parent's whole.
// `output: {layout: hf, max_shard_size: SIZE}` or `{layout: hf, mirror: true}`: Hugging Face's
// layout, sharded as save_pretrained shards (transformers' 5GB by default) or one file per input file.
void read_hf_output(YamlReader& in, const YAML::Node& output, CompiledRules& out) {
  out.output_file.clear();
  out.output_names = NameTemplate();
  out.mirror_output = false;
  out.hf_output = true;
  out.max_shard_size = st::kDefaultMaxShardSize;
  if (YamlReader::field(output, "file").IsDefined()) {
    in.error(output, "output takes 'file' (one file per rank) or 'layout: hf' (no ranks), not both");
  }
  const YAML::Node mirror = YamlReader::field(output, "mirror");
  const YAML::Node size = YamlReader::field(output, "max_shard_size");
  if (mirror.IsDefined()) {
    const auto text = in.string_value(mirror, "'mirror' of output");
    if (text && *text != "true" && *text != "false") {
      in.error(mirror, fmt::format("'mirror' of output must be true or false, got '{}'", *text));
    }
    if (text == "true") {
      if (size.IsDefined()) {
        in.error(output,
                 "output takes 'max_shard_size' (Hugging Face's shards) or 'mirror: true' (the input's "
                 "files), not both");
      }
      out.max_shard_size = 0;
      return;
    }
  }
  if (!size.IsDefined()) return;
  if (const auto text = in.string_value(size, "'max_shard_size' of output")) {
    try {
      out.max_shard_size = st::parse_max_shard_size(*text);
    } catch (const Error& e) {
      in.error(size, e.what());
    }
  }
}

void read_output(YamlReader& in, const YAML::Node& output, CompiledRules& out) {
  out.hf_output = false;
  out.max_shard_size = 0;
  if (const YAML::Node layout = YamlReader::field(output, "layout"); layout.IsDefined()) {
    const auto text = in.string_value(layout, "'layout' of output");
    if (text == "hf") {
      read_hf_output(in, output, out);
    } else if (text) {
      in.error(layout, fmt::format("'layout' of output must be hf (Hugging Face's files), got '{}'{}", *text,
                                   did_you_mean(*text, {"hf"})));
    }
    return;
  }
  if (YamlReader::field(output, "max_shard_size").IsDefined()) {
    in.error(output, "'max_shard_size' of output needs 'layout: hf'");
  }
  const YAML::Node mirror = YamlReader::field(output, "mirror");
  if (mirror.IsDefined()) {
    const auto text = in.string_value(mirror, "'mirror' of output");
    if (text && *text != "true") {
      in.error(
          mirror,
          fmt::format("'mirror' of output must be true (or leave it out and give 'file'), got '{}'", *text));
    }
    if (YamlReader::field(output, "file").IsDefined()) {
      in.error(
          output,
          "output takes either 'file' (one file per rank) or 'mirror: true' (the input's files), not both");
    }
    out.output_file.clear();
    out.output_names = NameTemplate();
    out.mirror_output = true;
    return;
  }
  if (!YamlReader::field(output, "file").IsDefined()) {
    in.error(output,
             "output needs 'file' (one file per rank, e.g. file: \"model{rank}-mp{mp}.safetensors\") or "
             "'mirror: true' (one output per input file, under its name)");
    return;
  }
  if (auto file = in.string_field(output, "file", "output", true)) {
    if (auto names = read_output_template(in, YamlReader::field(output, "file"), *file))
      out.output_names = *names;
    out.output_file = *file;
    out.mirror_output = false;
  }
}

}  // namespace

bool is_component(const std::string& text) { return !text.empty() && text.find('.') == std::string::npos; }

std::optional<Split> read_split(YamlReader& in, const YAML::Node& node, const std::string& what) {
  const auto text = in.string_value(node, what);
  if (!text) return std::nullopt;
  if (*text == "out") return Split::out;
  if (*text == "in") return Split::in;
  if (*text == "replicate") return Split::replicate;
  in.error(node, fmt::format("{} must be out, in or replicate, got '{}'{}", what, *text,
                             did_you_mean(*text, {"out", "in", "replicate"})));
  return std::nullopt;
}

// `{NAME: drop}` or `{NAME: dequantized}`: one file, named plainly, not copied as it is.
void read_side_file_rule(YamlReader& in, const YAML::Node& item, std::map<std::string, SourceLocation>& seen,
                         CompiledRules& out) {
  if (item.size() != 1) {
    in.error(item, "an entry of side_files is a file name, a pattern, or {NAME: drop | dequantized}");
    return;
  }
  const auto name = in.string_value(item.begin()->first, "a side file's name");
  const auto action = in.string_value(item.begin()->second, "what happens to a side file");
  if (!name || !action) return;
  if (!is_plain_file_name(*name) || name->find_first_of("*?[") != std::string::npos) {
    in.error(
        item,
        fmt::format("side file '{}' with an action must be a plain file name, not a path or pattern", *name));
  }
  if (!seen.emplace(*name, in.where(item)).second)
    in.error(item, fmt::format("side file '{}' is listed twice", *name));
  if (*action == "drop") {
    out.side_file_rules.push_back({*name, SideFileRule::Action::drop});
  } else if (*action == "dequantized") {
    out.side_file_rules.push_back({*name, SideFileRule::Action::dequantized});
  } else {
    in.error(
        item.begin()->second,
        fmt::format("side file '{}': '{}' is not drop (never copied) or dequantized (config.json without "
                    "its quantisation){}",
                    *name, *action, did_you_mean(*action, {"drop", "dequantized"})));
  }
}

void read_header(YamlReader& in, const YAML::Node& root, CompiledRules& out, bool extends) {
  if (const auto version = in.uint_field(root, "shardwise", "the rules file", true);
      version && *version != 1) {
    in.error(YamlReader::field(root, "shardwise"),
             fmt::format("unsupported rules schema version {} (this shardwise reads version 1)", *version));
  }
  if (auto name = in.string_field(root, "name", "the rules file", !extends)) out.name = std::move(*name);
  if (auto description = in.string_field(root, "description", "the rules file", false)) {
    out.description = std::move(*description);
  }
  if (const YAML::Node output = YamlReader::field(root, "output"); !output.IsDefined()) {
    if (!extends) {
      in.error(root,
               "the rules file is missing required key 'output' (e.g. output: {file: "
               "\"model{rank}-mp{mp}.safetensors\"})");
    }
  } else if (in.check_map(output, "output", {"file", "mirror", "layout", "max_shard_size"})) {
    read_output(in, output, out);
  }
  if (const YAML::Node side = YamlReader::field(root, "side_files");
      side.IsDefined() && in.check_list(side, "side_files")) {
    out.side_files.clear();  // an extending file's list replaces its parent's
    out.side_file_rules.clear();
    std::map<std::string, SourceLocation> seen;
    for (const auto& item : side) {
      if (item.IsMap()) {
        read_side_file_rule(in, item, seen, out);
        continue;
      }
      const auto file = in.string_value(item, "an entry of side_files");
      if (!file) continue;
      if (!is_plain_file_name(*file))
        in.error(item, fmt::format("side file '{}' must be a plain file name, not a path", *file));
      if (!seen.emplace(*file, in.where(item)).second)
        in.error(item, fmt::format("side file '{}' is listed twice", *file));
      out.side_files.push_back(*file);
    }
  }
  const YAML::Node policy = YamlReader::field(root, "unknown_keys");
  if (policy.IsDefined() || !extends) out.unknown_keys_where = in.where(policy.IsDefined() ? policy : root);
  if (policy.IsDefined()) {
    const auto text = in.string_value(policy, "unknown_keys");
    if (text == "replicate") {
      out.unknown_keys = UnknownKeys::replicate;
    } else if (text == "error") {
      out.unknown_keys = UnknownKeys::error;
    } else if (text) {
      in.error(policy, fmt::format("unknown_keys must be replicate or error, got '{}'{}", *text,
                                   did_you_mean(*text, {"replicate", "error"})));
    }
  }
}

// `default: N`, or `default: infer` (the count of each ownership scope, from the checkpoint).
void read_default(YamlReader& in, const YAML::Node& map, const std::string& what, ParamInfo& spec) {
  const YAML::Node node = YamlReader::field(map, "default");
  if (node.IsDefined() && node.IsScalar() && node.Scalar() == "infer") {
    spec.inferred = true;
  } else {
    spec.default_value = in.uint_field(map, "default", what, false);
  }
}

// `range: [MIN, MAX]` of a number parameter, its default inside it.
void read_range(YamlReader& in, const YAML::Node& map, const std::string& what, ParamInfo& spec) {
  const YAML::Node node = YamlReader::field(map, "range");
  if (!node.IsDefined()) return;
  if (!node.IsSequence() || node.size() != 2) {
    in.error(node, fmt::format("range of {} must be [MIN, MAX]", what));
    return;
  }
  const auto min = in.uint_value(node[0], "the minimum of the range of " + what);
  const auto max = in.uint_value(node[1], "the maximum of the range of " + what);
  if (!min || !max) return;
  if (*min > *max) {
    in.error(node, fmt::format("range of {} is empty: {} > {}", what, *min, *max));
    return;
  }
  spec.min = *min;
  spec.max = *max;
  if (spec.default_value && (*spec.default_value < *min || *spec.default_value > *max)) {
    in.error(YamlReader::field(map, "default"), fmt::format("default {} of {} is outside its range [{}, {}]",
                                                            *spec.default_value, what, *min, *max));
  }
}

// `choices: [a, b]` with `default: a` (a word of the list, or none: required).
void read_choices(YamlReader& in, const YAML::Node& map, const YAML::Node& node, const std::string& what,
                  ParamInfo& spec) {
  const auto words = in.string_list(node, "choices of " + what);
  if (!words) {
    in.error(node, fmt::format("choices of {} must be a list of words", what));
    return;
  }
  for (const std::string& word : *words) {
    if (!is_identifier(word))
      in.error(node, fmt::format("choice '{}' of {} must be a word ([A-Za-z_][A-Za-z0-9_]*)", word, what));
    if (std::count(words->begin(), words->end(), word) > 1)
      in.error(node, fmt::format("choice '{}' of {} is listed twice", word, what));
  }
  if (words->empty()) in.error(node, fmt::format("choices of {} is empty", what));
  spec.choices = *words;
  const YAML::Node given = YamlReader::field(map, "default");
  if (!given.IsDefined()) return;
  const auto word = in.string_value(given, "default of " + what);
  if (!word) return;
  const auto it = std::find(words->begin(), words->end(), *word);
  if (it == words->end()) {
    in.error(given, fmt::format("default '{}' of {} is not one of its choices ({}){}", *word, what,
                                fmt::join(*words, ", "), did_you_mean(*word, *words)));
    return;
  }
  spec.default_value = static_cast<std::uint64_t>(it - words->begin());
}

void read_params(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_open_map(node, "params")) return;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string name = entry.first.Scalar();
    const std::string what = fmt::format("parameter '{}'", name);
    if (name == "mp") {
      in.error(entry.first, "parameter 'mp' is built in (the --model-parallel value): do not declare it");
      continue;
    }
    if (!is_identifier(name))
      in.error(entry.first,
               fmt::format("parameter name '{}' must be an identifier ([A-Za-z_][A-Za-z0-9_]*)", name));
    const auto earlier =
        std::find_if(out.params.begin(), out.params.end(), [&](const auto& p) { return p.name == name; });
    if (earlier != out.params.end() && replaced_by_child(in, earlier->where)) continue;
    ParamInfo spec;
    spec.name = name;
    spec.where = in.where(entry.first);
    if (in.check_map(entry.second, what, {"default", "help", "choices", "from_config", "map", "range"})) {
      if (const YAML::Node choices = YamlReader::field(entry.second, "choices"); choices.IsDefined()) {
        read_choices(in, entry.second, choices, what, spec);
        if (const YAML::Node range = YamlReader::field(entry.second, "range"); range.IsDefined())
          in.error(range, fmt::format("range of {} bounds a number: a choice parameter takes none", what));
      } else {
        read_default(in, entry.second, what, spec);
        read_range(in, entry.second, what, spec);
      }
      read_from_config(in, entry.second, what, spec);
      spec.help = in.string_field(entry.second, "help", what, false).value_or("");
    }
    out.params.push_back(std::move(spec));
  }
}

// `add_prefix: P` with an optional `except: REGEX` beside it.
void read_add_prefix(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  const YAML::Node add = YamlReader::field(node, "add_prefix");
  const YAML::Node except = YamlReader::field(node, "except");
  if (!add.IsDefined()) {
    if (except.IsDefined())
      in.error(except, "'except' of normalize belongs to 'add_prefix', which is not given");
    return;
  }
  const auto prefix = in.string_value(add, "add_prefix");
  if (!prefix) return;
  if (prefix->empty()) in.error(add, "add_prefix '' adds nothing");
  AddPrefixRule rule{*prefix, nullptr, in.where(add), ""};
  if (except.IsDefined()) {
    const auto pattern = in.string_value(except, "'except' of add_prefix");
    if (!pattern) return;
    auto re = std::make_shared<RE2>(*pattern, RE2::Quiet);
    if (!re->ok()) {
      in.error(except,
               fmt::format("invalid regex '{}' in 'except' of add_prefix: {}", *pattern, re->error()));
      return;
    }
    rule.except = std::move(re);
  }
  out.add_prefix = std::move(rule);
}

void read_normalize(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_map(node, "normalize", {"strip_prefix", "add_prefix", "except", "rename"})) return;
  read_add_prefix(in, node, out);
  if (const YAML::Node prefixes = YamlReader::field(node, "strip_prefix");
      prefixes.IsDefined() && in.check_list(prefixes, "strip_prefix")) {
    for (const auto& item : prefixes) {
      const auto prefix = in.string_value(item, "an entry of strip_prefix");
      if (!prefix) continue;
      if (prefix->empty()) in.error(item, "strip_prefix '' removes nothing");
      for (const auto& earlier : out.strip_prefixes) {
        if (earlier.where.file != in.file()) continue;  // an extending file's prefixes come first on purpose
        if (!prefix->empty() && prefix->starts_with(earlier.prefix)) {
          in.error(item,
                   fmt::format(
                       "strip_prefix '{}' can never apply: the earlier prefix '{}' ({}:{}) is removed first",
                       *prefix, earlier.prefix, earlier.where.line, earlier.where.column));
          break;
        }
      }
      out.strip_prefixes.push_back({*prefix, in.where(item)});
    }
  }
  const YAML::Node renames = YamlReader::field(node, "rename");
  if (!renames.IsDefined() || !in.check_list(renames, "rename")) return;
  for (const auto& item : renames) {
    if (!in.check_map(item, "rename rule", {"from", "to"})) continue;
    const auto from = in.string_field(item, "from", "rename rule", true);
    const auto to = in.string_field(item, "to", "rename rule", true);
    if (!from || !to) continue;
    if (!is_component(*from) || !is_component(*to)) {
      in.error(item, fmt::format("rename '{}' -> '{}': both must be one name component (non-empty, no '.')",
                                 *from, *to));
    } else if (*from == *to) {
      in.error(item, fmt::format("rename of '{}' to itself changes nothing", *from));
    }
    for (const auto& earlier : out.renames) {
      if (earlier.where.file == in.file() && earlier.from == *from && earlier.to == *to) {
        in.error(item, fmt::format("rename rule never decides anything: it is identical to the rule at {}:{}",
                                   earlier.where.line, earlier.where.column));
        break;
      }
    }
    out.renames.push_back({*from, *to, in.where(item)});
  }
}

void compile_renames(CompiledRules& out) {
  // Precompute each component's fate under the ordered renames, so matching is one hash lookup.
  for (const auto& start : out.renames) {
    RenameChain chain{start.from, {}};
    for (std::size_t i = 0; i < out.renames.size(); ++i) {
      if (chain.result == out.renames[i].from) {
        chain.result = out.renames[i].to;
        chain.applied.push_back(i);
      }
    }
    out.rename_chains.emplace(start.from, std::move(chain));
    out.rename_lengths |= std::uint64_t{1} << std::min<std::size_t>(start.from.size(), 63);
  }
}

void read_rejects(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "reject")) return;
  DuplicateRules duplicates("reject");
  const std::size_t first = out.rejects.size();
  for (const auto& item : node) {
    if (!in.check_map(item, "reject rule", {"name", "match", "reason"})) continue;
    const auto name = in.string_field(item, "name", "reject rule", false);
    read_match(in, item, "reject rule", out.reject_matcher, duplicates);
    const auto reason = in.string_field(item, "reason", "reject rule", true);
    if (reason && reason->empty())
      in.error(YamlReader::field(item, "reason"), "reject rule needs a reason to show, got ''");
    const std::string label =
        name ? "reject: " + *name : fmt::format("reject[{}]", out.rejects.size() - first);
    out.rejects.push_back({{label, in.where(item)}, reason.value_or("")});
  }
}

namespace {
std::optional<NameTemplate> read_name_template(YamlReader& in, const YAML::Node& node,
                                               const std::string& what);
}  // namespace

void read_skips(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "skip")) return;
  DuplicateRules duplicates("skip");
  const std::size_t first = out.skips.size();
  for (const auto& item : node) {
    if (!in.check_map(item, "skip rule", {"name", "match", "reason", "companion_of"})) continue;
    const auto name = in.string_field(item, "name", "skip rule", false);
    read_match(in, item, "skip rule", out.skip_matcher, duplicates);
    const auto reason = in.string_field(item, "reason", "skip rule", true);
    const std::string label = name ? "skip: " + *name : fmt::format("skip[{}]", out.skips.size() - first);
    out.skips.push_back({{label, in.where(item)}, reason.value_or("")});
    if (const YAML::Node of = YamlReader::field(item, "companion_of"); of.IsDefined())
      out.skips.back().companion_of = read_name_template(in, of, "'companion_of' of skip rule");
  }
}

void read_keys(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "keys")) return;
  DuplicateRules duplicates("key");
  const std::size_t first = out.keys.size();
  for (const auto& item : node) {
    if (!in.check_map(item, "key rule", {"name", "match", "key"})) continue;
    const auto name = in.string_field(item, "name", "key rule", false);
    const RE2* re = read_match(in, item, "key rule", out.key_matcher, duplicates);
    KeyRule rule{{rule_label("keys", name, out.keys.size() - first), in.where(item)},
                 in.string_field(item, "key", "key rule", false),
                 0};
    if (rule.literal && !is_component(*rule.literal)) {
      in.error(YamlReader::field(item, "key"),
               fmt::format("key '{}' must be one name component (non-empty, no '.')", *rule.literal));
    }
    if (re != nullptr) {
      rule.key_group = named_group(*re, "key");
      if (rule.key_group != 0 && rule.literal) {
        in.error(item, "key rule has both a literal 'key:' and a (?P<key>...) group: keep one");
      } else if (rule.key_group == 0 && !rule.literal) {
        in.error(YamlReader::field(item, "match"),
                 "key rule needs a (?P<key>...) group in its match, or a literal 'key:'");
      }
    }
    out.keys.push_back(std::move(rule));
  }
}

void read_table(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_open_map(node, "table")) return;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string key = entry.first.Scalar();
    const std::string what = fmt::format("table entry '{}'", key);
    if (key.empty()) in.error(entry.first, "table key '' can never match: a key cannot be empty");
    if (key.find('.') != std::string::npos) {
      in.error(entry.first,
               fmt::format("table key '{}' can never match: a key is one name component (no '.')", key));
    }
    TableEntry table_entry{
        {fmt::format("table[{}]", key), in.where(entry.first)}, std::nullopt, Split::replicate};
    if (in.check_map(entry.second, what, {"rename", "split", "units"})) {
      table_entry.units = read_units(in, entry.second, what, out);
      table_entry.rename = in.string_field(entry.second, "rename", what, false);
      if (table_entry.rename && !is_component(*table_entry.rename)) {
        in.error(YamlReader::field(entry.second, "rename"),
                 fmt::format("rename '{}' of {} must be one name component (non-empty, no '.')",
                             *table_entry.rename, what));
      }
      if (const YAML::Node split = YamlReader::field(entry.second, "split"); !split.IsDefined()) {
        in.error(entry.second, fmt::format("{} is missing required key 'split'", what));
      } else {
        table_entry.split =
            read_split(in, split, fmt::format("'split' of {}", what)).value_or(Split::replicate);
      }
    }
    if (out.table.emplace(key, std::move(table_entry)).second) out.table_order.push_back(key);
  }
}

void read_overrides(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "overrides")) return;
  DuplicateRules duplicates("override");
  const std::size_t first = out.overrides.size();
  for (const auto& item : node) {
    if (!in.check_map(item, "override rule", {"name", "match", "split", "units"})) continue;
    const auto name = in.string_field(item, "name", "override rule", false);
    read_match(in, item, "override rule", out.override_matcher, duplicates);
    OverrideRule rule{{rule_label("override", name, out.overrides.size() - first), in.where(item)},
                      Split::replicate};
    if (const YAML::Node split = YamlReader::field(item, "split"); !split.IsDefined()) {
      in.error(item, "override rule is missing required key 'split'");
    } else {
      rule.split = read_split(in, split, "'split' of override rule").value_or(Split::replicate);
    }
    rule.units = read_units(in, item, "override rule", out);
    out.overrides.push_back(std::move(rule));
  }
}

void read_ownership(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "ownership")) return;
  DuplicateRules duplicates("ownership");
  const std::size_t first = out.ownership.size();
  std::vector<std::string> param_names{"mp"};
  for (const auto& param : out.params) param_names.push_back(param.name);
  for (const auto& item : node) {
    if (!in.check_map(item, "ownership rule", {"name", "match", "count", "partial"})) continue;
    const auto name = in.string_field(item, "name", "ownership rule", false);
    const RE2* re = read_match(in, item, "ownership rule", out.ownership_matcher, duplicates);
    OwnershipRule rule{{rule_label("ownership", name, out.ownership.size() - first), in.where(item)},
                       in.string_field(item, "count", "ownership rule", true).value_or(""),
                       0};
    rule.partial = read_partial(in, item);
    if (re != nullptr) {
      rule.index_group = named_group(*re, "index");
      if (rule.index_group == 0) {
        in.error(YamlReader::field(item, "match"),
                 "ownership rule needs an (?P<index>...) group in its match");
      }
    }
    const bool known =
        std::find(param_names.begin(), param_names.end(), rule.count_param) != param_names.end();
    if (!rule.count_param.empty() && !known) {
      in.error(YamlReader::field(item, "count"),
               fmt::format("count names an undefined parameter '{}'{}", rule.count_param,
                           did_you_mean(rule.count_param, param_names)));
    }
    for (const auto& param : out.params) {
      if (param.name == rule.count_param) rule.count_inferred = param.inferred;
    }
    if (rule.partial && rule.count_inferred) {
      in.error(
          YamlReader::field(item, "partial"),
          fmt::format(
              "a partial ownership rule needs a given count: parameter '{}' says 'default: infer', and a "
              "checkpoint holding part of a scope does not tell its count",
              rule.count_param));
    }
    out.ownership.push_back(std::move(rule));
  }
}

namespace {

using TransformKind = TransformRule::Kind;

// `reinterpret: {from: I8, to: F4}`.
void read_reinterpret(YamlReader& in, const YAML::Node& spec, TransformRule& rule) {
  if (!in.check_map(spec, "'reinterpret' of transform rule", {"from", "to"})) return;
  const auto dtype = [&](const char* key) -> std::optional<st::DType> {
    const YAML::Node value = YamlReader::field(spec, key);
    if (value.IsDefined()) return read_dtype(in, value, fmt::format("'{}' of reinterpret", key));
    in.error(spec, fmt::format("reinterpret is missing required key '{}'", key));
    return std::nullopt;
  };
  const auto from = dtype("from");
  const auto to = dtype("to");
  if (!from || !to) return;
  rule.from = *from;
  rule.to = *to;
  const unsigned from_bits = st::dtype_bits(*from);
  const unsigned to_bits = st::dtype_bits(*to);
  if (from_bits < to_bits || from_bits % to_bits != 0) {
    in.error(spec, fmt::format("cannot reinterpret {} ({} bits) as {} ({} bits): the element width must "
                               "be the same or divide the source's",
                               st::dtype_name(*from), from_bits, st::dtype_name(*to), to_bits));
  }
}

// A companion name template: `{name}` and `{stem}` only, at least one of them.
void read_companion(YamlReader& in, const YAML::Node& spec, const char* key, const std::string& what,
                    TransformRule& rule) {
  const auto text = in.string_field(spec, key, what, true);
  if (!text) return;
  NameTemplate::Parsed parsed =
      NameTemplate::parse(*text, kCompanionFields, fmt::format("'{}' of {}", key, what));
  if (!parsed.name_template) {
    in.error(YamlReader::field(spec, key), parsed.error);
    return;
  }
  if (!parsed.name_template->uses(kNameField) && !parsed.name_template->uses(kStemField)) {
    in.error(YamlReader::field(spec, key),
             fmt::format("'{}' of {} must name the companion from the tensor's name ({{name}} or {{stem}})",
                         key, what));
  }
  rule.companion = std::move(*parsed.name_template);
}

// A template of `{name}` and `{stem}` read from `node` (a string), or nullopt after reporting.
std::optional<NameTemplate> read_name_template(YamlReader& in, const YAML::Node& node,
                                               const std::string& what) {
  const auto text = in.string_value(node, what);
  if (!text) return std::nullopt;
  NameTemplate::Parsed parsed = NameTemplate::parse(*text, kCompanionFields, what);
  if (!parsed.name_template) {
    in.error(node, parsed.error);
    return std::nullopt;
  }
  if (!parsed.name_template->uses(kNameField) && !parsed.name_template->uses(kStemField)) {
    in.error(node,
             fmt::format("{} must name the tensor from the weight's name ({{name}} or {{stem}})", what));
  }
  return std::move(*parsed.name_template);
}

// A number, or the name of a parameter of the rules (whose value it takes when planning).
std::optional<TransformRule::Number> read_number(YamlReader& in, const YAML::Node& node,
                                                 const std::string& what,
                                                 const std::vector<std::string>& params) {
  const auto text = in.string_value(node, what);
  if (!text) return std::nullopt;
  if (!text->empty() &&
      std::all_of(text->begin(), text->end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const auto value = in.uint_value(node, what);
    if (!value) return std::nullopt;
    return TransformRule::Number{*value, {}};
  }
  if (std::find(params.begin(), params.end(), *text) == params.end()) {
    in.error(node, fmt::format("{} must be a number or a parameter of the rules, not '{}'{}", what, *text,
                               did_you_mean(*text, params)));
    return std::nullopt;
  }
  return TransformRule::Number{0, *text};
}

// `to: BF16 | F16` of the dequantizations (BF16 when absent).
void read_output_dtype(YamlReader& in, const YAML::Node& spec, const char* section, TransformRule& rule) {
  rule.to = st::DType::BF16;
  if (const YAML::Node to = YamlReader::field(spec, "to"); to.IsDefined()) {
    const auto dtype = read_dtype(in, to, fmt::format("'to' of {}", section));
    if (dtype && *dtype != st::DType::BF16 && *dtype != st::DType::F16) {
      in.error(to, fmt::format("{} writes BF16 or F16, not {}", section, st::dtype_name(*dtype)));
    } else if (dtype) {
      rule.to = *dtype;
    }
  }
}

// `dequantize: {scale: '{stem}.scale' | [templates], block: [128, 128] | per_channel | per_tensor |
// infer, to: BF16 | F16, nan: torch-cpu, lookup: output, missing: error, dtype: [F8_E4M3]}`.
void read_dequantize(YamlReader& in, const YAML::Node& spec, TransformRule& rule,
                     const std::vector<std::string>& params) {
  const std::string what = "'dequantize' of transform rule";
  if (!in.check_map(spec, what, {"scale", "block", "infer", "to", "nan", "lookup", "missing", "dtype"}))
    return;
  if (const YAML::Node scale = YamlReader::field(spec, "scale"); scale.IsSequence()) {
    // Several conventions: the first template whose tensor exists is the scale.
    if (scale.size() == 0) in.error(scale, "'scale' of dequantize lists no template");
    for (std::size_t i = 0; i < scale.size(); ++i) {
      auto parsed = read_name_template(in, scale[i], fmt::format("'scale' of {}", what));
      if (!parsed) continue;
      if (i == 0)
        rule.companion = std::move(*parsed);
      else
        rule.companion_alternatives.push_back(std::move(*parsed));
    }
  } else {
    read_companion(in, spec, "scale", what, rule);
  }
  rule.from = st::DType::F8_E4M3;
  read_output_dtype(in, spec, "dequantize", rule);
  if (const YAML::Node dtypes = YamlReader::field(spec, "dtype"); dtypes.IsDefined()) {
    if (!in.check_list(dtypes, "'dtype' of dequantize")) return;
    for (const auto& item : dtypes) {
      // The weights it applies to (the others are written unchanged): one-byte dtypes, E4M3 the only
      // one it reads (another one-byte dtype is claimed, to be refused when planning).
      const auto dtype = read_dtype(in, item, "'dtype' of dequantize");
      if (dtype && st::dtype_bits(*dtype) != 8) {
        in.error(item,
                 fmt::format("dequantize reads one-byte weights (F8_E4M3), not {}", st::dtype_name(*dtype)));
      } else if (dtype) {
        rule.dtypes.push_back(*dtype);
      }
    }
  }
  const YAML::Node block = YamlReader::field(spec, "block");
  if (!block.IsDefined()) {
    in.error(spec,
             "dequantize is missing required key 'block' ([rows, columns] of weight per scale entry, "
             "per_channel, per_tensor or infer)");
  } else if (block.IsScalar()) {
    const std::string grid = block.Scalar();
    static const std::vector<std::string> kGrids = {"per_channel", "per_tensor", "infer"};
    if (grid == "per_channel")
      rule.grid = TransformRule::Grid::per_channel;
    else if (grid == "per_tensor")
      rule.grid = TransformRule::Grid::per_tensor;
    else if (grid == "infer")
      rule.grid = TransformRule::Grid::infer;
    else
      in.error(block, fmt::format("'block' of dequantize must be [rows, columns], per_channel, per_tensor or "
                                  "infer, not '{}'{}",
                                  grid, did_you_mean(grid, kGrids)));
  } else if (!block.IsSequence() || block.size() != 2) {
    in.error(block, "'block' of dequantize must be [rows, columns]");
  } else {
    // Numbers, or parameters (a block size read from the checkpoint's config).
    const auto rows = read_number(in, block[0], "block rows", params);
    const auto cols = read_number(in, block[1], "block columns", params);
    if ((rows && rows->param.empty() && rows->value == 0) ||
        (cols && cols->param.empty() && cols->value == 0))
      in.error(block, "'block' of dequantize must be positive");
    if (rows) rule.grid_rows = *rows;
    if (cols) rule.grid_cols = *cols;
    rule.block_rows = rows && rows->param.empty() ? rows->value : 1;
    rule.block_cols = cols && cols->param.empty() ? cols->value : 1;
  }
  // Under `infer` a block grid is still tried first: [128, 128] for `block: infer`, the block given
  // with `infer: true`.
  if (rule.grid == TransformRule::Grid::infer) {
    rule.grid_rows = rule.grid_cols = TransformRule::Number{128, {}};
    rule.block_rows = rule.block_cols = 128;
  }
  if (const YAML::Node infer = YamlReader::field(spec, "infer"); infer.IsDefined()) {
    const auto text = in.string_value(infer, "'infer' of dequantize");
    if (text && *text != "true" && *text != "false") {
      in.error(infer, fmt::format("'infer' of dequantize must be true or false, not '{}'", *text));
    } else if (text && *text == "true") {
      if (rule.grid != TransformRule::Grid::block && rule.grid != TransformRule::Grid::infer)
        in.error(infer, "'infer: true' of dequantize goes with a block [rows, columns]");
      rule.grid = TransformRule::Grid::infer;
    }
  }
  if (const auto nan = in.string_field(spec, "nan", what, false)) {
    static const std::vector<std::string> kNans = {"torch-cpu", "triton", "canonical"};
    if (*nan == "torch-cpu")
      rule.nan_bits = 0xFFFF;
    else if (*nan == "triton")
      rule.nan_bits = 0x7FFF;
    else if (*nan == "canonical")
      rule.nan_bits = 0x7FC0;
    else
      in.error(
          YamlReader::field(spec, "nan"),
          fmt::format("nan must be torch-cpu (0xFFFF), triton (0x7FFF) or canonical (0x7FC0), got '{}'{}",
                      *nan, did_you_mean(*nan, kNans)));
  } else {
    in.error(spec,
             "dequantize is missing required key 'nan' (torch-cpu, triton or canonical: what a NaN becomes "
             "in BF16, see docs/transforms.md)");
  }
  if (const auto lookup = in.string_field(spec, "lookup", what, false)) {
    if (*lookup == "input")
      rule.lookup = TransformRule::Lookup::input;
    else if (*lookup != "output")
      in.error(YamlReader::field(spec, "lookup"),
               fmt::format("lookup must be output or input, got '{}'", *lookup));
  }
  if (const auto missing = in.string_field(spec, "missing", what, false)) {
    if (*missing == "keep")
      rule.missing = TransformRule::Missing::keep;
    else if (*missing != "error")
      in.error(YamlReader::field(spec, "missing"),
               fmt::format("missing must be error or keep, got '{}'", *missing));
  }
}

// `dequantize_packed: {packing: gptq | gptq_v2 | awq, bits: N | PARAM, group_size: N | PARAM,
// zeros: '{stem}.qzeros', scales: '{stem}.scales', group_index: '{stem}.g_idx', output:
// '{stem}.weight', to: BF16 | F16}`: the transform names no member itself; the rules do.
void read_dequantize_packed(YamlReader& in, const YAML::Node& spec, TransformRule& rule,
                            const std::vector<std::string>& params) {
  const std::string what = "'dequantize_packed' of transform rule";
  if (!in.check_map(spec, what,
                    {"packing", "bits", "group_size", "zeros", "scales", "group_index", "output", "to"}))
    return;
  rule.from = st::DType::I32;
  rule.lookup = TransformRule::Lookup::input;
  read_output_dtype(in, spec, "dequantize_packed", rule);
  rule.nan_bits = 0x7FC0;
  if (const auto packing = in.string_field(spec, "packing", what, true)) {
    static const std::vector<std::string> kPackings = {"gptq", "gptq_v2", "awq"};
    if (*packing == "gptq")
      rule.packing = TransformRule::Packing::gptq;
    else if (*packing == "gptq_v2")
      rule.packing = TransformRule::Packing::gptq_v2;
    else if (*packing == "awq")
      rule.packing = TransformRule::Packing::awq;
    else
      in.error(YamlReader::field(spec, "packing"),
               fmt::format("packing must be gptq, gptq_v2 or awq, not '{}'{}", *packing,
                           did_you_mean(*packing, kPackings)));
  }
  const auto number = [&](const char* key, TransformRule::Number& into) {
    const YAML::Node node = YamlReader::field(spec, key);
    if (!node.IsDefined()) {
      in.error(spec, fmt::format("dequantize_packed is missing required key '{}'", key));
      return;
    }
    if (auto value = read_number(in, node, fmt::format("'{}' of dequantize_packed", key), params))
      into = std::move(*value);
  };
  number("bits", rule.bits);
  number("group_size", rule.group_size);
  if (rule.bits.param.empty() && rule.bits.value != 2 && rule.bits.value != 4 && rule.bits.value != 8)
    in.error(YamlReader::field(spec, "bits"), fmt::format("bits must be 2, 4 or 8, not {}", rule.bits.value));
  const auto name_template = [&](const char* key, bool required) -> std::optional<NameTemplate> {
    const YAML::Node node = YamlReader::field(spec, key);
    if (!node.IsDefined()) {
      if (required) in.error(spec, fmt::format("dequantize_packed is missing required key '{}'", key));
      return std::nullopt;
    }
    return read_name_template(in, node, fmt::format("'{}' of {}", key, what));
  };
  if (auto t = name_template("scales", true)) rule.companion = std::move(*t);
  if (auto t = name_template("zeros", true)) rule.zeros = std::move(*t);
  if (auto t = name_template("output", true)) rule.output = std::move(*t);
  rule.group_index = name_template("group_index", false);
}

// `requantize: {scale: '{stem}.scale'}` (the FP4 weight) or `requantize_scale: {weight: '{stem}.weight'}`.
void read_requantize(YamlReader& in, const YAML::Node& spec, const char* section, TransformRule& rule) {
  const std::string what = fmt::format("'{}' of transform rule", section);
  const bool weight = rule.kind == TransformKind::requantize;
  if (!in.check_map(spec, what, {weight ? "scale" : "weight"})) return;
  read_companion(in, spec, weight ? "scale" : "weight", what, rule);
  rule.from = weight ? st::DType::I8 : st::DType::F8_E8M0;
  rule.to = weight ? st::DType::F8_E4M3 : st::DType::F8_E8M0;
}

// `permute_rope: {heads: n_heads, from: interleaved, to: half_split}`: both layouts named (one of
// each), the head count a number or a parameter with a value for the planner (not `default: infer`).
void read_permute_rope(YamlReader& in, const YAML::Node& spec, const CompiledRules& out,
                       TransformRule& rule) {
  const std::string what = "'permute_rope' of transform rule";
  if (!in.check_map(spec, what, {"heads", "from", "to"})) return;
  const YAML::Node heads = YamlReader::field(spec, "heads");
  if (!heads.IsDefined()) {
    in.error(spec, "permute_rope is missing required key 'heads' (a number, or the parameter giving it)");
  } else if (const auto text = in.string_value(heads, "'heads' of permute_rope")) {
    if (const auto number = parse_decimal(*text)) {
      if (*number == 0) in.error(heads, "'heads' of permute_rope must be positive");
      rule.heads = *number;
    } else {
      rule.heads_param = *text;
      std::vector<std::string> names;
      const ParamInfo* param = nullptr;
      for (const ParamInfo& p : out.params) {
        names.push_back(p.name);
        if (p.name == *text) param = &p;
      }
      if (param == nullptr) {
        in.error(heads, fmt::format("'heads' of permute_rope names an undefined parameter '{}'{}", *text,
                                    did_you_mean(*text, names)));
      } else if (param->inferred || !param->choices.empty()) {
        in.error(heads, fmt::format("'heads' of permute_rope names parameter '{}', which {}: a head count "
                                    "is one number for the whole file",
                                    *text, param->inferred ? "says 'default: infer'" : "is a choice"));
      }
    }
  }
  using Order = TransformRule::RopeOrder;
  const auto order = [&](const char* key) -> std::optional<Order> {
    const auto text = in.string_field(spec, key, what, true);
    if (!text) return std::nullopt;
    if (*text == "interleaved") return Order::interleaved;
    if (*text == "half_split") return Order::half_split;
    in.error(YamlReader::field(spec, key),
             fmt::format("'{}' of permute_rope must be interleaved (Meta's rows) or half_split (Hugging "
                         "Face's), got '{}'{}",
                         key, *text, did_you_mean(*text, {"interleaved", "half_split"})));
    return std::nullopt;
  };
  const auto from = order("from");
  const auto to = order("to");
  if (from && to && *from == *to)
    in.error(spec,
             fmt::format("permute_rope from and to are both {}: nothing to permute", rope_order_name(*to)));
  if (to) rule.rope_to = *to;
}

// `when: {param: value, ...}`: numbers, or words of a parameter's choices.
void read_when(YamlReader& in, const YAML::Node& node, const CompiledRules& out, TransformRule& rule) {
  if (!in.check_open_map(node, "when")) return;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string name = entry.first.Scalar();
    const auto param =
        std::find_if(out.params.begin(), out.params.end(), [&](const auto& p) { return p.name == name; });
    if (name != "mp" && param == out.params.end()) {
      std::vector<std::string> names{"mp"};
      for (const auto& p : out.params) names.push_back(p.name);
      in.error(entry.first,
               fmt::format("when names an undefined parameter '{}'{}", name, did_you_mean(name, names)));
      continue;
    }
    const auto text = in.string_value(entry.second, fmt::format("when {}", name));
    if (!text) continue;
    try {
      ParamInfo mp;
      mp.name = "mp";
      rule.when.emplace_back(name, parse_param_value(name == "mp" ? mp : *param, *text));
    } catch (const Error& e) {
      in.error(entry.second, fmt::format("when {}: {}", name, e.what()));
    }
  }
}

}  // namespace

void read_transforms(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "transforms")) return;
  DuplicateRules duplicates("transform");
  static const std::vector<std::pair<const char*, TransformKind>> kKinds = {
      {"reinterpret", TransformKind::reinterpret},
      {"dequantize", TransformKind::dequantize},
      {"requantize", TransformKind::requantize},
      {"requantize_scale", TransformKind::requantize_scale},
      {"dequantize_packed", TransformKind::dequantize_packed},
      {"permute_rope", TransformKind::permute_rope}};
  std::vector<std::string> params{"mp"};
  for (const auto& param : out.params) params.push_back(param.name);
  for (const auto& item : node) {
    if (!in.check_map(item, "transform rule",
                      {"name", "match", "when", "reinterpret", "dequantize", "requantize", "requantize_scale",
                       "dequantize_packed", "permute_rope"}))
      continue;
    const auto name = in.string_field(item, "name", "transform rule", false);
    TransformRule rule{{rule_label("transform", name, out.transforms.size()), in.where(item)}};
    if (const YAML::Node when = YamlReader::field(item, "when"); when.IsDefined())
      read_when(in, when, out, rule);
    // Two rules of one regex differ by their conditions: only the same regex and conditions is a duplicate.
    const auto pattern = in.string_field(item, "match", "transform rule", true);
    if (pattern) {
      if (auto error = out.transform_matcher.add(*pattern)) {
        in.error(YamlReader::field(item, "match"),
                 fmt::format("invalid regex '{}' in transform rule: {}", *pattern, *error));
        continue;
      }
      std::string key = *pattern;
      for (const auto& [param, value] : rule.when) key += fmt::format("\n{}={}", param, value);
      duplicates.check(in, YamlReader::field(item, "match"), key);
    }
    std::vector<const char*> given;
    for (const auto& [section, kind] : kKinds) {
      if (YamlReader::field(item, section).IsDefined()) {
        given.push_back(section);
        rule.kind = kind;
      }
    }
    if (given.size() != 1) {
      in.error(item,
               given.empty()
                   ? "transform rule needs one of reinterpret, dequantize, requantize, requantize_scale, "
                     "dequantize_packed, permute_rope"
                   : fmt::format("transform rule has {}: give one", fmt::join(given, " and ")));
    } else {
      const YAML::Node spec = YamlReader::field(item, given.front());
      switch (rule.kind) {
        case TransformKind::reinterpret:
          read_reinterpret(in, spec, rule);
          break;
        case TransformKind::dequantize:
          read_dequantize(in, spec, rule, params);
          break;
        case TransformKind::dequantize_packed:
          read_dequantize_packed(in, spec, rule, params);
          break;
        case TransformKind::requantize:
        case TransformKind::requantize_scale:
          read_requantize(in, spec, given.front(), rule);
          break;
        case TransformKind::permute_rope:
          read_permute_rope(in, spec, out, rule);
          break;
      }
    }
    if (pattern) out.transforms.push_back(std::move(rule));
  }
}

}  // namespace shardwise::rules::detail
