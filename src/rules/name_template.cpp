#include <shardwise/rules/name_template.hpp>

#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <re2/re2.h>

#include <shardwise/core/decimal.hpp>

namespace shardwise::rules {

namespace {

// A number as expand_numbers() writes it: no leading zero. Too many digits are caught after the
// match, so that a name with a huge number is told apart from a name of another shape.
constexpr std::string_view kNumberGroup = "(0|[1-9][0-9]*)";

}  // namespace

NameTemplate::Parsed NameTemplate::parse(std::string_view text, std::span<const std::string_view> fields,
                                         std::string_view subject) {
  NameTemplate result;
  result.text_ = std::string(text);
  result.fields_ = fields;
  std::string literal;
  for (std::size_t pos = 0; pos < text.size();) {
    if (text[pos] != '{') {
      literal += text[pos++];
      continue;
    }
    const std::size_t close = text.find('}', pos);
    const std::string_view field =
        text.substr(pos + 1, close == std::string_view::npos ? std::string_view::npos : close - pos - 1);
    std::size_t index = 0;
    while (index < fields.size() && fields[index] != field) ++index;
    if (close == std::string_view::npos || index == fields.size()) {
      std::vector<std::string> known;
      for (const std::string_view f : fields) known.push_back(fmt::format("{{{}}}", f));
      return {std::nullopt, fmt::format("{} has an unknown placeholder '{{{}{}' (known: {})", subject, field,
                                        close == std::string_view::npos ? "" : "}", fmt::join(known, ", "))};
    }
    result.parts_.push_back({std::move(literal), index});
    literal.clear();
    pos = close + 1;
  }
  result.parts_.push_back({std::move(literal), kNone});
  result.compile();
  if (!result.numbers_->ok()) {
    return {std::nullopt,
            fmt::format("{} cannot be matched against names: {}", subject, result.numbers_->error())};
  }
  return {std::move(result), {}};
}

void NameTemplate::compile() {
  std::string expr;
  for (const Part& part : parts_) {
    expr += RE2::QuoteMeta(part.literal);
    if (part.field != kNone) expr += kNumberGroup;
  }
  RE2::Options options;
  options.set_encoding(RE2::Options::EncodingLatin1);  // names are bytes: any byte matches itself
  options.set_log_errors(false);
  numbers_ = std::make_shared<const RE2>(expr, options);
}

bool NameTemplate::uses(std::size_t field) const {
  for (const Part& part : parts_) {
    if (part.field == field) return true;
  }
  return false;
}

std::string NameTemplate::expand(std::span<const std::string_view> values) const {
  if (!parts_.empty() && values.size() != fields_.size()) {
    throw std::invalid_argument("NameTemplate::expand: one value per field");
  }
  std::string name;
  for (const Part& part : parts_) {
    name += part.literal;
    if (part.field != kNone) name += values[part.field];
  }
  return name;
}

std::string NameTemplate::expand_numbers(std::span<const std::uint64_t> values) const {
  std::vector<std::string> texts;
  for (const std::uint64_t value : values) texts.push_back(std::to_string(value));
  const std::vector<std::string_view> views(texts.begin(), texts.end());
  return expand(views);
}

NameTemplate NameTemplate::with(std::size_t field, std::string_view value) const {
  if (!numbers_) return *this;  // the default template: nothing to fix
  NameTemplate bound;
  bound.fields_ = fields_;
  std::string literal;
  for (const Part& part : parts_) {
    literal += part.literal;
    if (part.field == field) {
      literal += value;
      continue;
    }
    if (part.field != kNone)
      bound.text_ += fmt::format("{}{{{}}}", literal, fields_[part.field]);
    else
      bound.text_ += literal;
    bound.parts_.push_back({std::move(literal), part.field});
    literal.clear();
  }
  bound.compile();
  return bound;
}

NameMatch NameTemplate::match(std::string_view name) const {
  NameMatch result;
  if (!numbers_) {  // the default template
    if (name.empty()) result.fit = NameMatch::Fit::yes;
    return result;
  }
  std::vector<re2::StringPiece> groups(parts_.size());  // the whole match, then one per placeholder
  if (!numbers_->Match(re2::StringPiece(name.data(), name.size()), 0, name.size(), RE2::ANCHOR_BOTH,
                       groups.data(), static_cast<int>(groups.size()))) {
    return result;
  }
  std::vector<std::optional<std::uint64_t>> values(fields_.size());
  for (std::size_t i = 0; i + 1 < parts_.size(); ++i) {
    const std::string_view digits(groups[i + 1].data(), groups[i + 1].size());
    const std::optional<std::uint64_t> value = parse_decimal(digits);
    if (!value) {
      result.fit = NameMatch::Fit::number_too_large;
      result.field = fields_[parts_[i].field];
      result.digits = std::string(digits);
      return result;
    }
    std::optional<std::uint64_t>& seen = values[parts_[i].field];
    if (seen && *seen != *value) return result;  // a repeated field with two values
    seen = value;
  }
  result.fit = NameMatch::Fit::yes;
  for (const std::optional<std::uint64_t>& value : values) result.values.push_back(value.value_or(0));
  return result;
}

}  // namespace shardwise::rules
