#include <shardwise/rules/explain.hpp>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/printable.hpp>
#include <shardwise/plan/ranks.hpp>

#include "rules/rules_impl.hpp"

namespace shardwise::rules {

namespace {

std::string plural(std::size_t n, std::string_view word) {
  if (n != 1 && word.ends_with('y')) return fmt::format("{} {}ies", n, word.substr(0, word.size() - 1));
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

std::string dtype_list(const std::vector<st::DType>& dtypes) {
  if (dtypes.empty()) return "any dtype";
  std::vector<std::string_view> names;
  for (const auto dtype : dtypes) names.push_back(st::dtype_name(dtype));
  return fmt::format("{}", fmt::join(names, "|"));
}

// "blocks.3.mlp.items": the output name up to the captured index, without the dot before it.
std::string scope_of(const std::string& output, const Ownership& o) {
  std::string_view scope = std::string_view(output).substr(0, o.index_begin);
  if (scope.ends_with('.')) scope.remove_suffix(1);
  return std::string(scope);
}

// Where a placed tensor goes: replicated, split (in member terms for packed members), or owned.
std::string placement(const Decision& d, const Params& params, std::uint64_t mp) {
  if (d.owner) {
    const Ownership& o = *d.owner;
    if (!o.count) {
      return fmt::format(
          "whole to rank index {} / ({} / mp={}), {} being the count of its scope {} in the checkpoint",
          o.index, o.count_param, mp, o.count_param, scope_of(d.output, o));
    }
    const std::uint64_t count = *o.count;
    if (count < mp || count % mp != 0) {
      return fmt::format("owned, but cannot be placed: {}={} is not a multiple of mp={}", o.count_param,
                         count, mp);
    }
    if (o.index >= count)
      return fmt::format("owned, but index {} is out of range ({}={})", o.index, o.count_param, count);
    return fmt::format("whole to rank {} = index {} / ({}={} / mp={})", plan::owner_rank(o.index, count, mp),
                       o.index, o.count_param, count, mp);
  }
  if (d.split == Split::replicate) return fmt::format("replicated on all {}", plural(mp, "rank"));
  const std::string_view axis = split_name(d.split);
  if (d.member == nullptr && d.split_units != 0) {
    const std::string units = d.units_param.empty() ? std::to_string(d.split_units)
                                                    : fmt::format("{}={}", d.units_param, d.split_units);
    const int dim = d.split == Split::out ? 0 : 1;
    if (d.split_units >= mp) {
      return fmt::format("split on dim {} ({}) into {} equal parts of whole units ({}, {} per rank)", dim,
                         axis, mp, units,
                         d.split_units % mp == 0 ? std::to_string(d.split_units / mp) : "not a whole number");
    }
    return fmt::format(
        "split on dim {} ({}) into {} units ({}), fewer than ranks: rank r takes unit r / (mp / {}), "
        "each unit on {} ranks",
        dim, axis, d.split_units, units, d.split_units,
        mp % d.split_units == 0 ? std::to_string(mp / d.split_units) : "(mp not a multiple)");
  }
  if (d.member == nullptr) {
    return fmt::format("split on dim {} ({}) into {} equal parts", d.split == Split::out ? 0 : 1, axis, mp);
  }
  for (std::size_t i = 0; i < d.member->dims.size(); ++i) {
    if (d.member->dims[i].axis == d.split) {
      const MemberDim& dim = d.member->dims[i];
      const auto value = dim.divisor_param.empty() ? params.end() : params.find(dim.divisor_param);
      return fmt::format("split on logical {} into {} equal parts: {} dim {} ({}{})", axis, mp,
                         d.member->suffix, i, describe_member_dim(dim),
                         value == params.end() ? "" : fmt::format(", {}={}", value->first, value->second));
    }
  }
  return fmt::format("split on logical {}: {} has no {} dim, so it is replicated on all {}", axis,
                     d.member->suffix, axis, plural(mp, "rank"));
}

}  // namespace

std::string describe_member_dim(const MemberDim& dim) {
  const std::string_view axis = split_name(dim.axis);
  if (!dim.divisor_param.empty()) return fmt::format("{}/{}", axis, dim.divisor_param);
  return dim.divisor == 1 ? std::string(axis) : fmt::format("{}/{}", axis, dim.divisor);
}

std::string describe_member_shape(const LayoutMember& member) {
  std::vector<std::string> dims;
  for (const MemberDim& dim : member.dims) dims.push_back(describe_member_dim(dim));
  return fmt::format("[{}]", fmt::join(dims, ", "));
}

std::string describe_member(const LayoutMember& member) {
  std::string text = fmt::format("{} {} {}", member.suffix, describe_member_shape(member),
                                 dtype_list(member.allowed_dtypes));
  if (member.cast_to) text += fmt::format(" -> {}", st::dtype_name(*member.cast_to));
  return text;
}

namespace {

// The words of a pattern ("proj", "weight" in '(?:^|\.)proj\.weight$'): candidates for the last
// name component of the tensors it matches.
std::vector<std::string> pattern_words(std::string_view pattern) {
  std::vector<std::string> words;
  const auto word_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; };
  for (std::size_t i = 0; i < pattern.size();) {
    if (!word_char(pattern[i]) || (i > 0 && pattern[i - 1] == '\\')) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < pattern.size() && word_char(pattern[end])) ++end;
    words.emplace_back(pattern.substr(i, end - i));
    i = end;
  }
  return words;
}

// The weight output names whose companion under `tmpl` would be `output`: `{name}` gives one,
// `{stem}` one per candidate last component. Empty when the template does not fit `output` (or
// holds more than one placeholder).
std::vector<std::string> weights_named_by(const std::string& tmpl, const std::string& output,
                                          const std::vector<std::string>& last_components) {
  const std::size_t name_at = tmpl.find("{name}");
  const std::size_t stem_at = tmpl.find("{stem}");
  if ((name_at == std::string::npos) == (stem_at == std::string::npos)) return {};
  const std::size_t at = name_at != std::string::npos ? name_at : stem_at;
  const std::string_view prefix = std::string_view(tmpl).substr(0, at);
  const std::string_view suffix = std::string_view(tmpl).substr(at + 6);
  if (suffix.find('{') != std::string_view::npos || output.size() < prefix.size() + suffix.size() ||
      !output.starts_with(prefix) || !output.ends_with(suffix)) {
    return {};
  }
  const std::string middle = output.substr(prefix.size(), output.size() - prefix.size() - suffix.size());
  if (name_at != std::string::npos) return {middle};
  std::vector<std::string> weights;
  for (const std::string& last : last_components) weights.push_back(middle + "." + last);
  return weights;
}

}  // namespace

std::optional<Rules::Consumer> Rules::consumer_of(const Decision& decision, const Params& params) const {
  if (decision.kind != Decision::Kind::place) return std::nullopt;
  const CompiledRules& r = *impl_;
  for (std::size_t i = 0; i < r.transforms.size(); ++i) {
    const TransformRule& rule = r.transforms[i];
    if (rule.kind != TransformRule::Kind::dequantize || rule.lookup != TransformRule::Lookup::output)
      continue;
    const std::vector<std::string> words = pattern_words(r.transform_matcher.pattern(i).pattern());
    for (const std::string& weight : weights_named_by(rule.companion.text(), decision.output, words)) {
      if (weight == decision.output) continue;
      const Decision w = decide(weight, params, Trail::omit);
      if (w.kind == Decision::Kind::place && w.transform == &rule && w.output == weight) {
        return Consumer{&rule, weight};
      }
    }
  }
  return std::nullopt;
}

namespace {

std::string explain_text(const Decision& d, const Params& params, const Rules* rules);

// Where a placed tensor goes in Hugging Face's layout, which depends on every tensor's size.
std::string hf_file_line(const Rules& rules) {
  if (rules.max_shard_size() == 0) {
    return "  file: the input file that holds it (Hugging Face's layout, mirrored; no ranks)\n";
  }
  return fmt::format(
      "  file: one of Hugging Face's shards of at most {} bytes, by natural name order (no ranks): "
      "`shardwise plan -i CHECKPOINT --filter NAME` names it\n",
      rules.max_shard_size());
}

}  // namespace

std::string explain_decision(const Rules& rules, const Decision& d, const Params& params) {
  const std::optional<Rules::Consumer> consumer = rules.consumer_of(d, params);
  if (!consumer) return explain_text(d, params, &rules);
  std::string text = fmt::format("{}\n  normalized: {}\n", d.source, d.normalized);
  for (const auto& step : d.trail) text += fmt::format("    - {}\n", step);
  text += fmt::format("  decided by: {} ({})\n", d.rule->label, d.rule->where.str());
  text += fmt::format("  consumed by: {} ({}), the block scale of {} ({}): not written\n",
                      consumer->transform->rule.label, consumer->transform->rule.where.str(),
                      consumer->weight, describe_transform(*consumer->transform));
  return printable_lines(text);  // the names may come from a checkpoint
}

std::string explain_decision(const Decision& d, const Params& params) {
  return explain_text(d, params, nullptr);
}

namespace {

// explain_decision's text; with `rules` of Hugging Face's layout, where the file is chosen instead of
// the placement over ranks (it has none).
std::string explain_text(const Decision& d, const Params& params, const Rules* rules) {
  const auto mp_entry = params.find("mp");
  const std::uint64_t mp = mp_entry == params.end() ? 1 : mp_entry->second;
  std::string text = fmt::format("{}\n  normalized: {}\n", d.source, d.normalized);
  for (const auto& step : d.trail) text += fmt::format("    - {}\n", step);
  switch (d.kind) {
    case Decision::Kind::skip:
      text += fmt::format("  skipped by {} ({}): {}\n", d.rule->label, d.rule->where.str(), d.reason);
      break;
    case Decision::Kind::reject:
      text += fmt::format("  REJECTED by {} ({}): {}\n", d.rule->label, d.rule->where.str(), d.reason);
      break;
    case Decision::Kind::unmatched:
      text += fmt::format("  UNMATCHED: {}\n", d.reason);
      break;
    case Decision::Kind::place:
      text += fmt::format("  decided by: {} ({})\n", d.rule->label, d.rule->where.str());
      if (!d.chunks.empty()) {
        // An unfused source: each chunk is explained as the tensor of its own name.
        for (const DecidedChunk& chunk : d.chunks) {
          text +=
              fmt::format("  chunk {} of {}: dim 0 rows [{}/{}, {}/{}) of the source\n", chunk.chunk + 1,
                          d.chunks.size(), chunk.first, chunk.total, chunk.first + chunk.size, chunk.total);
          std::string part = explain_decision(*chunk.decision, params);
          std::string indented;
          for (std::size_t at = 0; at < part.size();) {
            const std::size_t end = part.find('\n', at);
            indented += "    " + part.substr(at, end == std::string::npos ? end : end - at + 1);
            at = end == std::string::npos ? part.size() : end + 1;
          }
          text += indented;
        }
        break;
      }
      text += fmt::format("  output: {}\n", d.output);
      if (d.member != nullptr) {
        text += fmt::format("  packed: member '{}' of group {} (layout {}: {})\n", d.member->suffix, d.group,
                            d.layout->name, describe_member(*d.member));
      }
      if (d.transform != nullptr) {
        // A head count given by a parameter: its value, as the plan will use it.
        const auto heads =
            d.transform->heads_param.empty() ? params.end() : params.find(d.transform->heads_param);
        text += fmt::format("  transform: {}{} by {} ({})\n", describe_transform(*d.transform),
                            heads == params.end() ? "" : fmt::format(" ({}={})", heads->first, heads->second),
                            d.transform->rule.label, d.transform->rule.where.str());
      }
      if (rules != nullptr && rules->output_layout() == OutputLayout::hf) {
        text += hf_file_line(*rules);
      } else {
        text += fmt::format("  placement (mp={}): {}\n", mp, placement(d, params, mp));
      }
      if (d.fuse) {
        const FuseRule& rule = *d.fuse->rule;
        const bool listed = d.fuse->part < rule.parts.size();
        text += fmt::format(
            "  fused into: {} by {} ({}): {}{}, concatenated along dim {} after its cut for the rank{}\n",
            d.fuse->output, rule.rule.label, rule.rule.where.str(),
            rule.parts.size() > 1 || (listed && !rule.parts[d.fuse->part].empty())
                ? (listed ? fmt::format("part {} of [{}]", d.fuse->part + 1, fmt::join(rule.parts, ", "))
                          : fmt::format("NOT one of its parts [{}]", fmt::join(rule.parts, ", ")))
                : std::string("its part"),
            rule.stack ? fmt::format(" at index {}", d.fuse->index) : "", rule.dim,
            rule.stack ? "; the indices a rank holds stacked along a new dim 0" : "");
      }
      break;
  }
  return printable_lines(text);  // the names may come from a checkpoint
}

}  // namespace

std::string Rules::summary() const {
  const CompiledRules& r = *impl_;
  std::string text =
      fmt::format("{}: {}{}\n", r.display_name, r.name, r.description.empty() ? "" : " - " + r.description);
  if (!r.extends.empty()) text += fmt::format("  extends: {}\n", fmt::join(r.extends, " <- "));
  if (!r.rejects.empty()) text += fmt::format("  reject: {}\n", plural(r.rejects.size(), "rule"));
  text += fmt::format("  normalize: {}, {}{}\n", plural(r.strip_prefixes.size(), "prefix strip"),
                      plural(r.renames.size(), "rename"),
                      r.add_prefix ? fmt::format(", add prefix '{}'{}", r.add_prefix->prefix,
                                                 r.add_prefix->except ? " (with exceptions)" : "")
                                   : std::string());
  text += fmt::format("  rules: {}, {}, {}, {}, {}\n", plural(r.skips.size(), "skip"),
                      plural(r.keys.size(), "key rule"), plural(r.table.size(), "table entry"),
                      plural(r.overrides.size(), "override"), plural(r.ownership.size(), "ownership rule"));
  text +=
      fmt::format("  unknown keys: {}\n", r.unknown_keys == UnknownKeys::replicate ? "replicate" : "error");
  for (const auto& rule : r.transforms) {
    std::string when;
    for (const auto& [param, value] : rule.when) {
      const auto spec =
          std::find_if(r.params.begin(), r.params.end(), [&](const auto& p) { return p.name == param; });
      when += fmt::format(" when {}={}", param,
                          spec == r.params.end() ? std::to_string(value) : param_value_text(*spec, value));
    }
    text += fmt::format("  {}: {}{}\n", rule.rule.label, describe_transform(rule), when);
  }
  for (const auto& fuse : r.fuses) {
    text +=
        fmt::format("  {}: {}{} along dim {}{} -> {}\n", fuse->fuse.rule.label,
                    fuse->fuse.parts.size() > 1 || !fuse->fuse.parts.front().empty() ? "parts " : "one part",
                    fmt::join(fuse->fuse.parts, ", "), fuse->fuse.dim,
                    fuse->fuse.stack ? ", indices stacked along a new dim 0" : "", fuse->output.text());
  }
  for (const auto& unfuse : r.unfuses) {
    std::vector<std::string> chunks;
    for (const auto& chunk : unfuse->unfuse.chunks)
      chunks.push_back(fmt::format("{} ({})", chunk.name,
                                   chunk.size_param.empty() ? std::to_string(chunk.size) : chunk.size_param));
    text += fmt::format("  {}: dim {} in proportion into {}\n", unfuse->unfuse.rule.label, unfuse->unfuse.dim,
                        fmt::join(chunks, ", "));
  }
  for (const auto& layout : r.layouts) {
    std::vector<std::string> members;
    for (const auto& member : layout.members) members.push_back(describe_member(member));
    text += fmt::format("  layout {}: {}\n", layout.name, fmt::join(members, "; "));
  }
  // One line per parameter, as its flag: what `--help` of the commands that plan lists for it.
  text += "  params: mp (built in: --model-parallel)";
  for (const auto& param : r.params) {
    const std::string value = param_argument_text(param, "N");
    text += fmt::format("\n    {} {} ({}){}", param_flag(param.name), value, param_default_text(param),
                        param.help.empty() ? "" : ": " + param.help);
  }
  if (r.hf_output) {
    text += r.max_shard_size == 0
                ? std::string("\n  output: Hugging Face layout, one file per input file (no ranks)")
                : fmt::format("\n  output: Hugging Face layout, shards of at most {} bytes (no ranks)",
                              r.max_shard_size);
  } else {
    text += r.mirror_output
                ? std::string("\n  output: mirrored (each input file's name, the index rewritten)")
                : fmt::format("\n  output: {}", r.output_file);
  }
  std::vector<std::string> sides = r.side_files;
  for (const SideFileRule& rule : r.side_file_rules) {
    sides.push_back(rule.name +
                    (rule.action == SideFileRule::Action::drop ? " (not copied)" : " (dequantized)"));
  }
  if (!sides.empty()) text += fmt::format("; side files: {}", fmt::join(sides, ", "));
  return text + "\n";
}

}  // namespace shardwise::rules
