// `accepts:`: what a checkpoint the rules are written for looks like, as conditions on its
// tensors' names and dtypes (read here, with every problem at FILE:LINE:COL), and the judgement of
// a checkpoint's headers against them (Accepts::judge).
#include "rules/accepts.hpp"

#include <algorithm>
#include <optional>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/rules/bundled.hpp>

#include "rules/accepts_scan.hpp"
#include "rules/extends.hpp"
#include "rules/loader.hpp"
#include "rules/matcher.hpp"
#include "rules/rules_impl.hpp"
#include "rules/yaml_reader.hpp"

namespace shardwise::rules {

namespace {

std::string dtype_list(const std::vector<st::DType>& dtypes) {
  std::vector<std::string_view> names;
  for (const st::DType dtype : dtypes) names.push_back(st::dtype_name(dtype));
  return fmt::format("{}", fmt::join(names, "|"));
}

// "'\.qweight$' I32", "any name F8_E4M3": a condition without a name of its own.
std::string condition_text(const AcceptsCondition& condition) {
  const std::string names = condition.re ? fmt::format("'{}'", condition.pattern) : "any name";
  return condition.dtypes.empty() ? names : fmt::format("{} {}", names, dtype_list(condition.dtypes));
}

// `{name: TEXT, match: RE2, dtype: [DTYPE, ...]}`: at least one of match and dtype.
std::optional<AcceptsCondition> read_condition(detail::YamlReader& in, const YAML::Node& item,
                                               const std::string& what) {
  if (!in.check_map(item, what, {"name", "match", "dtype"})) return std::nullopt;
  AcceptsCondition condition;
  condition.where = in.where(item);
  bool ok = true;
  if (const auto pattern = in.string_field(item, "match", what, false)) {
    condition.pattern = *pattern;
    condition.re = std::make_unique<RE2>(*pattern, detail::rule_regex_options());
    if (!condition.re->ok()) {
      in.error(detail::YamlReader::field(item, "match"),
               fmt::format("invalid regex '{}' in {}: {}", *pattern, what, condition.re->error()));
      ok = false;
    }
  }
  if (const YAML::Node dtypes = detail::YamlReader::field(item, "dtype"); dtypes.IsDefined()) {
    if (!in.check_list(dtypes, "'dtype' of " + what)) return std::nullopt;
    for (const auto& entry : dtypes) {
      if (const auto dtype = detail::read_dtype(in, entry, "'dtype' of " + what))
        condition.dtypes.push_back(*dtype);
    }
    if (dtypes.size() == 0)
      in.error(dtypes, fmt::format("'dtype' of {} is empty: leave it out for any dtype", what));
  }
  if (!condition.re && condition.dtypes.empty() && ok) {
    in.error(
        item,
        fmt::format("{} needs 'match' (a regex of tensor names), 'dtype' (a list of dtypes) or both", what));
    return std::nullopt;
  }
  if (const auto name = in.string_field(item, "name", what, false)) {
    if (name->empty())
      in.error(detail::YamlReader::field(item, "name"), fmt::format("'name' of {} is empty", what));
    condition.name = *name;
  } else {
    condition.name = condition_text(condition);
  }
  if (!ok) return std::nullopt;
  return condition;
}

void read_conditions(detail::YamlReader& in, const YAML::Node& node, const char* list,
                     std::vector<AcceptsCondition>& out) {
  if (!in.check_list(node, fmt::format("'{}' of accepts", list))) return;
  const std::string what = fmt::format("condition of accepts.{}", list);
  for (const auto& item : node) {
    if (auto condition = read_condition(in, item, what)) out.push_back(std::move(*condition));
  }
}

std::string shown(const TensorHeader& tensor) {
  return fmt::format("{} ({})", tensor.name, st::dtype_name(tensor.dtype));
}

}  // namespace

namespace detail {

void read_accepts(YamlReader& in, const YAML::Node& node, Accepts::Section& out) {
  out.declared = true;
  if (!in.check_map(node, "accepts", {"require", "forbid", "defer_to"})) return;
  const YAML::Node require = YamlReader::field(node, "require");
  const YAML::Node forbid = YamlReader::field(node, "forbid");
  if (const YAML::Node defer = YamlReader::field(node, "defer_to"); defer.IsDefined()) {
    if (auto names = in.string_list(defer, "'defer_to' of accepts")) out.defer_to = std::move(*names);
  }
  if (require.IsDefined()) read_conditions(in, require, "require", out.require);
  if (forbid.IsDefined()) read_conditions(in, forbid, "forbid", out.forbid);
  if (!require.IsDefined() && !forbid.IsDefined()) {
    in.error(node,
             "accepts needs 'require', 'forbid' or both (lists of conditions on tensor names and dtypes)");
  }
}

void check_accepts(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  auto section = std::make_shared<Accepts::Section>();
  read_accepts(in, node, *section);
  // The chain is read child first: the nearest file's section is the one in force (as of_text).
  if (!out.accepts) out.accepts = std::move(section);
}

}  // namespace detail

Accepts::Accepts(std::shared_ptr<const Section> section) : section_(std::move(section)) {}
Accepts::Accepts(Accepts&&) noexcept = default;
Accepts& Accepts::operator=(Accepts&&) noexcept = default;
Accepts::~Accepts() = default;

Accepts Accepts::of_text(std::string_view yaml, const std::string& display_name) {
  auto section = std::make_unique<Section>();
  // The file's own section, else its parent's, ...: an extending file's replaces its parent's whole.
  for (const auto& source : detail::read_extends_chain(yaml, display_name)) {
    if (!source->root.IsDefined() || !source->root.IsMap()) break;
    const YAML::Node node = detail::YamlReader::field(source->root, "accepts");
    if (!node.IsDefined() || node.IsNull()) continue;
    detail::read_accepts(source->reader, node, *section);
    if (!source->reader.problems().empty()) section = std::make_unique<Section>();
    break;
  }
  return Accepts(std::move(section));
}

Accepts Accepts::of_rules(const Rules& rules) {
  if (rules.impl_->accepts) return Accepts(rules.impl_->accepts);
  return Accepts(std::make_shared<const Section>());
}

Accepts Accepts::of_named_rules(const std::string& value) {
  if (is_rules_path(value)) return of_text(detail::read_rules_file(value), value);
  const BundledRules* bundled = find_bundled_rules(value);
  if (bundled == nullptr) return Accepts(std::make_unique<Section>());
  return of_text(bundled->text, "<bundled>/" + bundled->file_name);
}

bool Accepts::declared() const { return section_->declared; }

std::string Accepts::describe() const {
  if (!section_->declared) return "";
  const auto names = [](const std::vector<AcceptsCondition>& conditions) {
    std::vector<std::string> out;
    for (const AcceptsCondition& condition : conditions) out.push_back(condition.name);
    return out.empty() ? std::string("nothing") : fmt::format("{}", fmt::join(out, ", "));
  };
  return fmt::format("requires {}; forbids {}", names(section_->require), names(section_->forbid));
}

AcceptsVerdict Accepts::judge(std::span<const TensorHeader> tensors) const {
  const Accepts* const self[] = {this};
  return std::move(judge_all(self, tensors).front());
}

std::vector<AcceptsVerdict> Accepts::judge_all(std::span<const Accepts* const> accepts,
                                               std::span<const TensorHeader> tensors) {
  std::vector<const AcceptsCondition*> conditions;
  for (const Accepts* one : accepts) {
    if (!one->section_->declared) continue;
    for (const AcceptsCondition& condition : one->section_->require) conditions.push_back(&condition);
    for (const AcceptsCondition& condition : one->section_->forbid) conditions.push_back(&condition);
  }
  const std::vector<detail::Witnesses> witnesses = detail::find_witnesses(conditions, tensors);
  std::vector<AcceptsVerdict> verdicts;
  verdicts.reserve(accepts.size());
  auto next = witnesses.begin();
  for (const Accepts* one : accepts) {
    const Section& section = *one->section_;
    AcceptsVerdict& verdict = verdicts.emplace_back();
    verdict.declared = section.declared;
    if (!section.declared) continue;
    verdict.defer_to = section.defer_to;
    for (const AcceptsCondition& condition : section.require) {
      const detail::Witnesses& found = *next++;
      if (found.holds != nullptr) {
        verdict.met.push_back(condition.name);
        continue;
      }
      std::string unmet = fmt::format("needs {}: no tensor is {}", condition.name, condition_text(condition));
      if (found.name_only != nullptr)
        unmet += fmt::format(" ({} is {})", found.name_only->name, st::dtype_name(found.name_only->dtype));
      verdict.unmet.push_back(std::move(unmet));
    }
    for (const AcceptsCondition& condition : section.forbid) {
      const detail::Witnesses& found = *next++;
      if (found.holds == nullptr) {
        verdict.met.push_back("no " + condition.name);
      } else {
        verdict.unmet.push_back(fmt::format("refuses {}: {}", condition.name, shown(*found.holds)));
      }
    }
    verdict.fits = verdict.unmet.empty();
  }
  return verdicts;
}

}  // namespace shardwise::rules
