// Loading a rules file and the files it extends (size and syntax guards in extends.cpp, then the
// sections in order, merged) and the small public accessors. Matching lives in decide.cpp.
#include <shardwise/rules/rules.hpp>

#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/decimal.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/rules/bundled.hpp>

#include <shardwise/rules/suggest.hpp>
#include "rules/accepts.hpp"
#include "rules/extends.hpp"
#include "rules/loader.hpp"
#include "rules/rules_impl.hpp"

namespace shardwise::rules {

namespace {

std::vector<std::string> st_names(const std::vector<st::DType>& dtypes) {
  std::vector<std::string> names;
  for (const st::DType dtype : dtypes) names.emplace_back(st::dtype_name(dtype));
  return names;
}

const std::vector<std::string> kTopLevelKeys = {
    "shardwise",    "extends",   "name",   "description", "params",  "output", "side_files",
    "unknown_keys", "normalize", "reject", "skip",        "layouts", "keys",   "table",
    "overrides",    "ownership", "tests",  "transforms",  "accepts", "fuse",   "unfuse"};

using SectionReader = void (*)(detail::YamlReader&, const YAML::Node&, CompiledRules&);
// Params first: ownership rules and tests refer to them.
const std::pair<const char*, SectionReader> kSections[] = {
    {"params", detail::read_params},       {"normalize", detail::read_normalize},
    {"reject", detail::read_rejects},      {"skip", detail::read_skips},
    {"layouts", detail::read_layouts},     {"keys", detail::read_keys},
    {"table", detail::read_table},         {"overrides", detail::read_overrides},
    {"ownership", detail::read_ownership}, {"transforms", detail::read_transforms},
    {"fuse", detail::read_fuses},          {"unfuse", detail::read_unfuses},
    {"accepts", detail::check_accepts}};

// `chain` is the file, then its parent, ... (all maps). Scalars are read parent first, so that a
// value an extending file gives replaces its parent's; each list is read child first (the first
// rule that matches wins, so the child's rules decide before the parent's), and a map entry of a
// name already read (the child's) replaces the parent's whole. Tests are the file's own.
void read_sections(const std::vector<detail::RulesSource*>& chain, CompiledRules& out) {
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const bool extends = detail::YamlReader::field((*it)->root, "extends").IsDefined();
    detail::read_header((*it)->reader, (*it)->root, out, extends);
  }
  for (const auto& [key, reader] : kSections) {
    for (detail::RulesSource* source : chain) {
      if (const YAML::Node node = detail::YamlReader::field(source->root, key);
          node.IsDefined() && !node.IsNull()) {
        reader(source->reader, node, out);
      }
    }
  }
  detail::compile_renames(out);
  detail::RulesSource& file = *chain.front();
  if (const YAML::Node tests = detail::YamlReader::field(file.root, "tests");
      tests.IsDefined() && !tests.IsNull()) {
    detail::read_tests(file.reader, tests, out);
  }
}

}  // namespace

namespace detail {

void load_rules(std::string_view yaml, const std::string& display_name, CompiledRules& out) {
  const auto chain = read_extends_chain(yaml, display_name);
  out.display_name = display_name;
  out.text = chain.front()->text;
  std::vector<RulesSource*> files;
  for (const auto& source : chain) {
    if (source.get() != chain.front().get()) {
      out.extends.push_back(source->display_name);
      out.text += "\n# extends " + source->display_name + "\n" + source->text;
    }
    if (!source->root.IsDefined()) continue;  // a YAML error, already reported
    if (!source->root.IsMap()) {
      source->reader.error(
          SourceLocation{source->display_name, 1, 1},
          fmt::format("a rules file must be a map of sections, got {}", node_kind(source->root)));
    } else if (source->reader.check_map(source->root, "the rules file", kTopLevelKeys)) {
      files.push_back(source.get());
    }
  }
  // Sections are read only when every file of the chain is a map: a parent that cannot be read
  // would make the child's rules look wrong in ways that are not the child's fault.
  if (files.size() == chain.size()) read_sections(files, out);
  Diagnostics problems(ErrorKind::rules);
  for (const auto& source : chain) {
    for (const auto& message : source->reader.problems()) problems.add(message);
  }
  problems.check("invalid rules file " + display_name);
  format_trails(out);
  for (auto* matcher :
       {&out.reject_matcher, &out.skip_matcher, &out.key_matcher, &out.override_matcher,
        &out.ownership_matcher, &out.transform_matcher, &out.fuse_matcher, &out.unfuse_matcher}) {
    matcher->compile();  // false only means slower matching, see OrderedMatcher::compile
  }
}

}  // namespace detail

std::string SourceLocation::str() const {
  if (line <= 0) return file;
  return fmt::format("{}:{}:{}", file, line, column);
}

std::string_view split_name(Split split) {
  switch (split) {
    case Split::out:
      return "out";
    case Split::in:
      return "in";
    case Split::replicate:
      break;
  }
  return "replicate";
}

const LayoutMember* Layout::find(std::string_view suffix) const {
  for (const auto& member : members) {
    if (member.suffix == suffix) return &member;
  }
  return nullptr;
}

Rules::Rules(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Rules::Rules(const Rules&) = default;
Rules& Rules::operator=(const Rules&) = default;
Rules::Rules(Rules&&) noexcept = default;
Rules& Rules::operator=(Rules&&) noexcept = default;
Rules::~Rules() = default;

Rules Rules::load_text(std::string_view yaml, const std::string& display_name) {
  auto impl = std::make_unique<Impl>();
  detail::load_rules(yaml, display_name, *impl);
  return Rules(std::move(impl));
}

Rules Rules::load_file(const std::string& path) { return load_text(detail::read_rules_file(path), path); }

Rules Rules::bundled() { return load_named_rules(std::string(default_rules_name())); }

std::uint64_t parse_param_value(const ParamInfo& param, std::string_view text) {
  const std::string flag = param_flag(param.name);
  if (!param.choices.empty()) {
    const auto it = std::find(param.choices.begin(), param.choices.end(), text);
    if (it != param.choices.end()) return static_cast<std::uint64_t>(it - param.choices.begin());
    throw Error(ErrorKind::usage,
                fmt::format("{} {}: expected one of {}{}", flag, text, fmt::join(param.choices, ", "),
                            detail::did_you_mean(std::string(text), param.choices)));
  }
  const std::optional<std::uint64_t> value = parse_decimal(text);
  if (!value) {
    throw Error(ErrorKind::usage, fmt::format("{} '{}': expected a non-negative integer (parameter {})", flag,
                                              text, param.name));
  }
  return *value;
}

std::string param_value_text(const ParamInfo& param, std::uint64_t value) {
  if (value < param.choices.size()) return param.choices[value];
  return std::to_string(value);
}

std::string describe_transform(const TransformRule& rule) {
  switch (rule.kind) {
    case TransformRule::Kind::reinterpret:
      return fmt::format("reinterpret {} as {}", st::dtype_name(rule.from), st::dtype_name(rule.to));
    case TransformRule::Kind::dequantize: {
      std::string scale = fmt::format("'{}'", rule.companion.text());
      for (const NameTemplate& alternative : rule.companion_alternatives)
        scale += fmt::format(" or '{}'", alternative.text());
      std::string grid;
      switch (rule.grid) {
        case TransformRule::Grid::block:
          grid = fmt::format("block {}x{}", rule.grid_rows.text(), rule.grid_cols.text());
          break;
        case TransformRule::Grid::per_channel:
          grid = "per channel";
          break;
        case TransformRule::Grid::per_tensor:
          grid = "per tensor";
          break;
        case TransformRule::Grid::infer:
          grid = fmt::format("block {}x{}, per channel or per tensor by the scale's shape",
                             rule.grid_rows.text(), rule.grid_cols.text());
          break;
      }
      const bool bf16 = rule.to == st::DType::BF16;
      return fmt::format(
          "dequantize {} x scale {} ({} name, {}) -> {}{}{}",
          rule.dtypes.empty() ? std::string("F8_E4M3")
                              : fmt::format("{}", fmt::join(st_names(rule.dtypes), "|")),
          scale, rule.lookup == TransformRule::Lookup::output ? "output" : "input", grid,
          st::dtype_name(rule.to), bf16 ? fmt::format(", NaN 0x{:04X}", rule.nan_bits) : "",
          rule.missing == TransformRule::Missing::keep ? "; without a scale: kept as it is" : "");
    }
    case TransformRule::Kind::dequantize_packed: {
      static constexpr const char* kPackings[] = {"gptq", "gptq_v2", "awq"};
      return fmt::format(
          "dequantize_packed {} {}-bit, group {}: codes x zeros '{}' x scales '{}'{} -> {} '{}'",
          kPackings[static_cast<int>(rule.packing)], rule.bits.text(), rule.group_size.text(),
          rule.zeros.text(), rule.companion.text(),
          rule.group_index ? fmt::format(", group index '{}' when present", rule.group_index->text()) : "",
          st::dtype_name(rule.to), rule.output.text());
    }
    case TransformRule::Kind::requantize:
      return fmt::format("requantize FP4 (I8) x E8M0 per 1x32 scale '{}' -> F8_E4M3 per 128x128",
                         rule.companion.text());
    case TransformRule::Kind::requantize_scale:
      return fmt::format("requantize the E8M0 per 1x32 scale of '{}' -> E8M0 per 128x128",
                         rule.companion.text());
    case TransformRule::Kind::permute_rope: {
      const auto from = rule.rope_to == TransformRule::RopeOrder::half_split
                            ? TransformRule::RopeOrder::interleaved
                            : TransformRule::RopeOrder::half_split;
      return fmt::format("permute rows per head (RoPE) {} -> {}, heads {}", rope_order_name(from),
                         rope_order_name(rule.rope_to),
                         rule.heads_param.empty() ? std::to_string(rule.heads) : rule.heads_param);
    }
  }
  return "";
}

std::uint64_t TransformRule::Number::resolve(
    const std::map<std::string, std::uint64_t, std::less<>>& params) const {
  if (param.empty()) return value;
  const auto it = params.find(param);
  return it == params.end() ? 0 : it->second;
}

std::string TransformRule::Number::text() const { return param.empty() ? fmt::format("{}", value) : param; }

std::string_view rope_order_name(TransformRule::RopeOrder order) {
  return order == TransformRule::RopeOrder::interleaved ? "interleaved" : "half_split";
}

std::string param_flag(std::string_view param) {
  std::string flag = "--" + std::string(param);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

const std::string& Rules::name() const { return impl_->name; }
const std::string& Rules::description() const { return impl_->description; }
const std::string& Rules::display_name() const { return impl_->display_name; }
const std::string& Rules::text() const { return impl_->text; }
const std::vector<std::string>& Rules::side_files() const { return impl_->side_files; }
const std::vector<SideFileRule>& Rules::side_file_rules() const { return impl_->side_file_rules; }
const std::vector<Layout>& Rules::layouts() const { return impl_->layouts; }
const std::vector<ParamInfo>& Rules::params() const { return impl_->params; }

const std::string& Rules::output_file_pattern() const { return impl_->output_file; }

bool Rules::mirrors_input() const { return impl_->mirror_output; }

OutputLayout Rules::output_layout() const {
  if (impl_->hf_output) return OutputLayout::hf;
  return impl_->mirror_output ? OutputLayout::mirror : OutputLayout::per_rank;
}

std::uint64_t Rules::max_shard_size() const { return impl_->max_shard_size; }

const NameTemplate& Rules::output_file_template() const { return impl_->output_names; }

std::string Rules::output_file(std::uint64_t rank, std::uint64_t mp) const {
  return impl_->output_names.expand_numbers(std::array{rank, mp});
}

std::string expand_output_file(std::string_view pattern, std::uint64_t rank, std::uint64_t mp) {
  const NameTemplate::Parsed parsed =
      NameTemplate::parse(pattern, kOutputFileFields, fmt::format("output file pattern '{}'", pattern));
  if (!parsed.name_template) throw Error(ErrorKind::input, parsed.error);
  return parsed.name_template->expand_numbers(std::array{rank, mp});
}

}  // namespace shardwise::rules
