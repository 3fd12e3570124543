// Structure in the rules: `fuse:` (many placed tensors -> one output, concatenated and/or stacked),
// `unfuse:` (one source -> named chunks, each decided as a tensor of its own name), and `units:`
// (a split that keeps whole heads). Loading and the decide() steps; the planner assembles.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/decimal.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/rules/suggest.hpp>

#include "rules/loader.hpp"

namespace shardwise::rules::detail {

namespace {

constexpr int kMaxDim = 7;

std::vector<std::string> param_names(const CompiledRules& out) {
  std::vector<std::string> names{"mp"};
  for (const auto& param : out.params) names.push_back(param.name);
  return names;
}

// A number, or the name of a parameter of the rules (with a did-you-mean otherwise).
void read_number_or_param(YamlReader& in, const YAML::Node& node, const std::string& what,
                          const CompiledRules& out, std::uint64_t& number, std::string& param) {
  const auto text = in.string_value(node, what);
  if (!text) return;
  if (const auto value = parse_decimal(*text)) {
    if (*value == 0) in.error(node, fmt::format("{} must be a positive number or a parameter, got 0", what));
    number = *value;
    return;
  }
  const auto names = param_names(out);
  if (std::find(names.begin(), names.end(), *text) == names.end()) {
    in.error(node,
             fmt::format("{} names an undefined parameter '{}'{}", what, *text, did_you_mean(*text, names)));
    return;
  }
  param = *text;
}

// The named groups of `re`, in group order, as a template's fields.
void named_fields(const RE2& re, std::vector<std::string>& fields, std::vector<int>& groups) {
  std::vector<std::pair<int, std::string>> named;
  for (const auto& [name, group] : re.NamedCapturingGroups()) named.emplace_back(group, name);
  std::sort(named.begin(), named.end());
  for (auto& [group, name] : named) {
    groups.push_back(group);
    fields.push_back(std::move(name));
  }
}

std::optional<NameTemplate> read_name_template(YamlReader& in, const YAML::Node& node,
                                               const std::string& text,
                                               std::span<const std::string_view> fields,
                                               const std::string& subject) {
  NameTemplate::Parsed parsed = NameTemplate::parse(text, fields, subject);
  if (!parsed.name_template) {
    in.error(node, parsed.error + " (a placeholder is a named group of the rule's match)");
    return std::nullopt;
  }
  return parsed.name_template;
}

int read_dim(YamlReader& in, const YAML::Node& item, const std::string& what) {
  const auto dim = in.uint_field(item, "dim", what, false).value_or(0);
  if (dim > kMaxDim) {
    in.error(YamlReader::field(item, "dim"),
             fmt::format("'dim' of {} must be at most {}, got {}", what, kMaxDim, dim));
    return 0;
  }
  return static_cast<int>(dim);
}

// The values of `groups` in `text` (empty views for groups that did not take part); nullopt when
// `re` does not match.
std::optional<std::vector<std::string_view>> capture_all(const RE2& re, std::string_view text,
                                                         const std::vector<int>& groups) {
  const int count = re.NumberOfCapturingGroups() + 1;
  std::vector<re2::StringPiece> pieces(static_cast<std::size_t>(count));
  const re2::StringPiece piece(text.data(), text.size());
  if (!re.Match(piece, 0, piece.size(), RE2::UNANCHORED, pieces.data(), count)) return std::nullopt;
  std::vector<std::string_view> values;
  for (const int group : groups) {
    const auto& p = pieces[static_cast<std::size_t>(group)];
    values.emplace_back(p.data() == nullptr ? std::string_view() : std::string_view(p.data(), p.size()));
  }
  return values;
}

std::string_view field_value(const std::vector<int>& groups, const std::vector<std::string_view>& values,
                             int group) {
  for (std::size_t i = 0; i < groups.size(); ++i) {
    if (groups[i] == group) return values[i];
  }
  return {};
}

}  // namespace

SplitUnits read_units(YamlReader& in, const YAML::Node& map, const std::string& what,
                      const CompiledRules& out) {
  SplitUnits units;
  const YAML::Node node = YamlReader::field(map, "units");
  if (!node.IsDefined()) return units;
  read_number_or_param(in, node, fmt::format("'units' of {}", what), out, units.count, units.param);
  return units;
}

void read_fuses(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "fuse")) return;
  const std::size_t first = out.fuses.size();
  for (const auto& item : node) {
    if (!in.check_map(item, "fuse rule", {"name", "match", "output", "parts", "dim", "stack"})) continue;
    const auto name = in.string_field(item, "name", "fuse rule", false);
    auto rule = std::make_unique<CompiledFuse>();
    rule->fuse.rule = {
        name ? fmt::format("fuse[{}]", *name) : fmt::format("fuse[{}]", out.fuses.size() - first),
        in.where(item)};
    rule->trail_suffix = fmt::format(" ({})", rule->fuse.rule.where.str());
    rule->fuse.dim = read_dim(in, item, "fuse rule");
    if (const YAML::Node stack = YamlReader::field(item, "stack"); stack.IsDefined()) {
      const auto text = in.string_value(stack, "'stack' of fuse rule");
      if (text && *text != "true" && *text != "false")
        in.error(stack, fmt::format("'stack' of fuse rule must be true or false, got '{}'", *text));
      rule->fuse.stack = text == "true";
    }
    if (const YAML::Node parts = YamlReader::field(item, "parts"); parts.IsDefined()) {
      if (auto list = in.string_list(parts, "'parts' of fuse rule")) {
        rule->fuse.parts = std::move(*list);
        for (std::size_t i = 0; i < rule->fuse.parts.size(); ++i) {
          const auto& part = rule->fuse.parts[i];
          if (std::find(rule->fuse.parts.begin(), rule->fuse.parts.begin() + static_cast<std::ptrdiff_t>(i),
                        part) != rule->fuse.parts.begin() + static_cast<std::ptrdiff_t>(i))
            in.error(parts, fmt::format("'parts' of fuse rule names '{}' twice", part));
        }
        if (rule->fuse.parts.empty()) in.error(parts, "'parts' of fuse rule is empty");
      }
    }
    const auto pattern = in.string_field(item, "match", "fuse rule", true);
    const auto output = in.string_field(item, "output", "fuse rule", true);
    if (!pattern) continue;
    if (auto error = out.fuse_matcher.add(*pattern)) {
      in.error(YamlReader::field(item, "match"),
               fmt::format("invalid regex '{}' in fuse rule: {}", *pattern, *error));
      continue;
    }
    const RE2& re = out.fuse_matcher.pattern(out.fuse_matcher.size() - 1);
    named_fields(re, rule->fields, rule->field_groups);
    for (const auto& field : rule->fields) rule->field_views.emplace_back(field);
    const auto& groups = re.NamedCapturingGroups();
    if (const auto it = groups.find("part"); it != groups.end()) rule->part_group = it->second;
    if (const auto it = groups.find("index"); it != groups.end()) rule->index_group = it->second;
    const YAML::Node match_node = YamlReader::field(item, "match");
    if (rule->part_group != 0 && rule->fuse.parts.empty())
      in.error(item, "fuse rule has a (?P<part>...) group but no 'parts' (the parts in order)");
    if (rule->part_group == 0 && !rule->fuse.parts.empty())
      in.error(match_node,
               "fuse rule lists 'parts' but its match has no (?P<part>...) group to tell them apart");
    if (rule->fuse.stack && rule->index_group == 0)
      in.error(match_node, "a stacking fuse rule (stack: true) needs an (?P<index>...) group in its match");
    if (!rule->fuse.stack && rule->index_group != 0)
      in.error(match_node,
               "fuse rule has an (?P<index>...) group but does not say 'stack: true' (indices are stacked)");
    if (!rule->fuse.stack && rule->fuse.parts.size() < 2)
      in.error(
          item,
          "a fuse rule that does not stack needs at least two parts (a (?P<part>...) group and 'parts')");
    if (rule->fuse.stack && rule->fuse.parts.empty()) rule->fuse.parts.emplace_back();
    if (output) {
      if (auto parsed = read_name_template(in, YamlReader::field(item, "output"), *output, rule->field_views,
                                           fmt::format("fuse output '{}'", *output)))
        rule->output = std::move(*parsed);
    }
    out.fuses.push_back(std::move(rule));
  }
}

void read_unfuses(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "unfuse")) return;
  const std::size_t first = out.unfuses.size();
  for (const auto& item : node) {
    if (!in.check_map(item, "unfuse rule", {"name", "match", "dim", "into"})) continue;
    const auto name = in.string_field(item, "name", "unfuse rule", false);
    auto rule = std::make_unique<CompiledUnfuse>();
    rule->unfuse.rule = {
        name ? fmt::format("unfuse[{}]", *name) : fmt::format("unfuse[{}]", out.unfuses.size() - first),
        in.where(item)};
    rule->unfuse.dim = read_dim(in, item, "unfuse rule");
    if (rule->unfuse.dim != 0) {
      in.error(YamlReader::field(item, "dim"),
               fmt::format("unfuse along dim {} is not supported: only dim 0, whose chunks are whole rows "
                           "(each a contiguous tensor of the source)",
                           rule->unfuse.dim));
    }
    const auto pattern = in.string_field(item, "match", "unfuse rule", true);
    if (!pattern) continue;
    if (auto error = out.unfuse_matcher.add(*pattern)) {
      in.error(YamlReader::field(item, "match"),
               fmt::format("invalid regex '{}' in unfuse rule: {}", *pattern, *error));
      continue;
    }
    named_fields(out.unfuse_matcher.pattern(out.unfuse_matcher.size() - 1), rule->fields, rule->field_groups);
    for (const auto& field : rule->fields) rule->field_views.emplace_back(field);
    const YAML::Node into = YamlReader::field(item, "into");
    if (!into.IsDefined()) {
      in.error(item, "unfuse rule is missing required key 'into' (the chunks: name and size)");
    } else if (in.check_list(into, "'into' of unfuse rule")) {
      for (const auto& chunk_node : into) {
        if (!in.check_map(chunk_node, "chunk of unfuse rule", {"name", "size"})) continue;
        UnfuseRule::Chunk chunk;
        if (auto text = in.string_field(chunk_node, "name", "chunk of unfuse rule", true)) {
          chunk.name = *text;
          if (auto parsed = read_name_template(in, YamlReader::field(chunk_node, "name"), *text,
                                               rule->field_views, fmt::format("chunk name '{}'", *text)))
            rule->names.push_back(std::move(*parsed));
        }
        if (const YAML::Node size = YamlReader::field(chunk_node, "size"); size.IsDefined())
          read_number_or_param(in, size, "'size' of a chunk", out, chunk.size, chunk.size_param);
        rule->unfuse.chunks.push_back(std::move(chunk));
      }
      if (rule->unfuse.chunks.size() < 2) in.error(into, "'into' of unfuse rule needs at least two chunks");
    }
    if (rule->names.size() == rule->unfuse.chunks.size()) out.unfuses.push_back(std::move(rule));
  }
}

void apply_fuse(const CompiledRules& rules, Decision& d, std::vector<std::string>* trail) {
  const auto index = rules.fuse_matcher.first_match(d.output);
  if (!index) return;
  const CompiledFuse& rule = *rules.fuses[*index];
  const auto values = capture_all(rules.fuse_matcher.pattern(*index), d.output, rule.field_groups);
  if (!values) return;
  FusePart part{&rule.fuse, rule.output.expand(*values), 0, 0};
  std::string what;
  if (rule.part_group != 0) {
    const std::string_view name = field_value(rule.field_groups, *values, rule.part_group);
    const auto it = std::find(rule.fuse.parts.begin(), rule.fuse.parts.end(), name);
    // A part the rule does not list is reported by the planner, which names the output.
    part.part = static_cast<std::size_t>(it - rule.fuse.parts.begin());
    what = fmt::format("part '{}' ({} of {})", name, part.part + 1, rule.fuse.parts.size());
  }
  if (rule.index_group != 0) {
    const auto number = parse_decimal(field_value(rule.field_groups, *values, rule.index_group));
    part.index = number.value_or(0);
    if (!number) part.part = rule.fuse.parts.size();  // reported as not a part, like an unknown name
    what += fmt::format("{}index {} stacked", what.empty() ? "" : ", ", part.index);
  }
  if (trail != nullptr) {
    trail->push_back(fmt::format("{}: {} of '{}', concatenated along dim {}{}", rule.fuse.rule.label,
                                 what.empty() ? "part" : what, part.output, rule.fuse.dim,
                                 rule.trail_suffix));
  }
  d.fuse = std::move(part);
}

bool apply_unfuse(const CompiledRules& rules, const Params& params, Decision& d, bool record,
                  std::string& why) {
  const auto index = rules.unfuse_matcher.first_match(d.normalized);
  if (!index) return false;
  const CompiledUnfuse& rule = *rules.unfuses[*index];
  const auto values = capture_all(rules.unfuse_matcher.pattern(*index), d.normalized, rule.field_groups);
  if (!values) return false;
  std::vector<std::uint64_t> sizes;
  std::uint64_t total = 0;
  for (const auto& chunk : rule.unfuse.chunks) {
    std::uint64_t size = chunk.size;
    if (!chunk.size_param.empty()) {
      const auto it = params.find(chunk.size_param);
      if (it == params.end()) {
        throw Error(ErrorKind::usage,
                    fmt::format("parameter '{}' needed by {} ({}) was not given", chunk.size_param,
                                rule.unfuse.rule.label, rule.unfuse.rule.where.str()));
      }
      size = it->second;
    }
    sizes.push_back(size);
    if (__builtin_add_overflow(total, size, &total)) {
      why = fmt::format("{} ({}): the chunk sizes overflow", rule.unfuse.rule.label,
                        rule.unfuse.rule.where.str());
      return true;
    }
  }
  d.rule = &rule.unfuse.rule;
  std::vector<std::string> names;
  for (const auto& name : rule.names) names.push_back(name.expand(*values));
  if (record) {
    std::vector<std::string> texts;
    for (std::size_t i = 0; i < names.size(); ++i) {
      const auto& chunk = rule.unfuse.chunks[i];
      texts.push_back(chunk.size_param.empty()
                          ? fmt::format("{} ({})", names[i], sizes[i])
                          : fmt::format("{} ({}={})", names[i], chunk.size_param, sizes[i]));
    }
    d.trail.push_back(fmt::format("{}: cut along dim {} in proportion into {} ({})", rule.unfuse.rule.label,
                                  rule.unfuse.dim, fmt::join(texts, ", "), rule.unfuse.rule.where.str()));
  }
  std::uint64_t first = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto chunk_decision = std::make_unique<Decision>();
    chunk_decision->source = d.source;
    chunk_decision->normalized = std::move(names[i]);
    decide_normalized(rules, *chunk_decision, params, record);
    d.chunks.push_back(DecidedChunk{&rule.unfuse, i, first, sizes[i], total, std::move(chunk_decision)});
    first += sizes[i];
  }
  return true;
}

}  // namespace shardwise::rules::detail
