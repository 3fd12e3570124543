// Packed layouts: members named by their last name component, each dim a function of the logical
// weight's [out, in], with the dtypes accepted and an optional cast.
#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include <shardwise/core/decimal.hpp>
#include <shardwise/safetensors/dtype.hpp>

#include <shardwise/rules/suggest.hpp>
#include "rules/loader.hpp"

namespace shardwise::rules::detail {

namespace {

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(' ');
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(' ');
  return std::string(text.substr(first, last - first + 1));
}

bool is_identifier(std::string_view text) {
  if (text.empty() || std::isdigit(static_cast<unsigned char>(text.front()))) return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// "out" | "in" | "out/N" | "in/N" with N a positive integer or the name of a parameter.
std::optional<MemberDim> parse_member_dim(const std::string& text) {
  const auto slash = text.find('/');
  const std::string axis = trim(std::string_view(text).substr(0, slash));
  MemberDim dim;
  if (axis == "out") {
    dim.axis = Split::out;
  } else if (axis == "in") {
    dim.axis = Split::in;
  } else {
    return std::nullopt;
  }
  if (slash == std::string::npos) return dim;
  const std::string divisor = trim(std::string_view(text).substr(slash + 1));
  if (is_identifier(divisor)) {
    dim.divisor_param = divisor;
    return dim;
  }
  const std::optional<std::uint64_t> value = parse_decimal(divisor);
  if (!value || *value == 0) return std::nullopt;
  dim.divisor = *value;
  return dim;
}

// A divisor naming a parameter must name one the planner has a value for: a declared parameter
// (or mp) that is not `default: infer` (inferred counts exist per ownership scope, not per file).
void check_divisor_param(YamlReader& in, const YAML::Node& node, const std::string& what,
                         const MemberDim& dim, const CompiledRules& out) {
  if (dim.divisor_param.empty() || dim.divisor_param == "mp") return;
  std::vector<std::string> names{"mp"};
  for (const auto& param : out.params) {
    if (param.name != dim.divisor_param) {
      names.push_back(param.name);
    } else if (param.inferred) {
      in.error(node,
               fmt::format("shape of {} divides by parameter '{}', which says 'default: infer': a divisor "
                           "needs a value for the whole file (give it a number as default)",
                           what, param.name));
      return;
    } else {
      return;
    }
  }
  in.error(node, fmt::format("shape of {} names an undefined parameter '{}'{}", what, dim.divisor_param,
                             did_you_mean(dim.divisor_param, names)));
}

std::vector<std::string> all_dtype_names() {
  std::vector<std::string> names;
  for (unsigned i = 0; i <= static_cast<unsigned>(st::DType::U64); ++i) {
    names.emplace_back(st::dtype_name(static_cast<st::DType>(i)));
  }
  return names;
}

// " (did you mean 'I32'?)" for a dtype spelt as PyTorch or NumPy spell it (int32, torch.float16,
// FP16), in lower case, or with a typo; "" when nothing is near.
std::string dtype_suggestion(const std::string& text) {
  std::string upper;
  for (const char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.starts_with("TORCH.")) upper.erase(0, 6);
  if (st::parse_dtype(upper) && upper != text) return " (did you mean '" + upper + "'?)";
  static const std::pair<const char*, const char*> kAliases[] = {
      {"INT8", "I8"},     {"INT16", "I16"},     {"INT32", "I32"},   {"INT64", "I64"},   {"UINT8", "U8"},
      {"UINT16", "U16"},  {"UINT32", "U32"},    {"UINT64", "U64"},  {"FLOAT16", "F16"}, {"HALF", "F16"},
      {"FP16", "F16"},    {"BFLOAT16", "BF16"}, {"FLOAT32", "F32"}, {"FLOAT", "F32"},   {"FP32", "F32"},
      {"FLOAT64", "F64"}, {"DOUBLE", "F64"},    {"FP64", "F64"},    {"BOOLEAN", "BOOL"}};
  for (const auto& [alias, name] : kAliases) {
    if (upper == alias) return fmt::format(" (did you mean '{}'?)", name);
  }
  return did_you_mean(text, all_dtype_names());
}

bool cast_supported(st::DType from, st::DType to) {
  return from == to || (to == st::DType::BF16 && (from == st::DType::F16 || from == st::DType::F32));
}

void read_shape(YamlReader& in, const YAML::Node& node, const std::string& what, const CompiledRules& out,
                LayoutMember& member) {
  if (!in.check_list(node, "shape of " + what)) return;
  if (node.size() != 1 && node.size() != 2) {
    in.error(node, fmt::format("shape of {} must have one dim or two (each out, in, out/N or in/N), got {}",
                               what, node.size()));
    return;
  }
  bool ok = true;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const auto text = in.string_value(node[i], "a dim of the shape of " + what);
    const auto dim = text ? parse_member_dim(*text) : std::nullopt;
    if (text && !dim) {
      in.error(node[i],
               fmt::format("bad shape expression '{}' in {}: expected out, in, out/N or in/N (N a positive "
                           "integer or a parameter's name)",
                           *text, what));
    }
    if (!dim) {
      ok = false;
      continue;
    }
    check_divisor_param(in, node[i], what, *dim, out);
    member.dims.push_back(*dim);
  }
  if (ok && member.dims.size() == 2 && member.dims[0].axis == member.dims[1].axis) {
    in.error(node, fmt::format("shape of {} must have one 'out' dim and one 'in' dim", what));
  }
}

void read_member(YamlReader& in, const YAML::Node& key, const YAML::Node& value, const std::string& layout,
                 const CompiledRules& out, LayoutMember& member) {
  const std::string what = fmt::format("member '{}' of layout '{}'", member.suffix, layout);
  if (!in.check_map(value, what, {"shape", "dtype", "cast"})) return;
  if (const YAML::Node shape = YamlReader::field(value, "shape"); shape.IsDefined()) {
    read_shape(in, shape, what, out, member);
  } else {
    in.error(key, fmt::format("{} is missing required key 'shape'", what));
  }
  if (const YAML::Node dtypes = YamlReader::field(value, "dtype");
      dtypes.IsDefined() && in.check_list(dtypes, "dtype of " + what)) {
    for (const auto& item : dtypes) {
      if (auto dtype = read_dtype(in, item, "dtype of " + what)) member.allowed_dtypes.push_back(*dtype);
    }
  }
  const YAML::Node cast = YamlReader::field(value, "cast");
  if (!cast.IsDefined()) return;
  member.cast_to = read_dtype(in, cast, "cast of " + what);
  if (!member.cast_to) return;
  if (member.allowed_dtypes.empty()) {
    in.error(cast, fmt::format("cast of {} needs a 'dtype' list (the dtypes it converts from)", what));
  }
  for (const auto from : member.allowed_dtypes) {
    if (!cast_supported(from, *member.cast_to)) {
      in.error(
          cast,
          fmt::format("cast from {} to {} is not supported (supported: F16->BF16, F32->BF16, or no change)",
                      st::dtype_name(from), st::dtype_name(*member.cast_to)));
    }
  }
}

}  // namespace

std::optional<st::DType> read_dtype(YamlReader& in, const YAML::Node& node, const std::string& what) {
  const auto text = in.string_value(node, what);
  if (!text) return std::nullopt;
  if (auto dtype = st::parse_dtype(*text)) return dtype;
  in.error(node, fmt::format("unknown dtype '{}' in {}{}", *text, what, dtype_suggestion(*text)));
  return std::nullopt;
}

void read_layouts(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_open_map(node, "layouts")) return;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    Layout layout{entry.first.Scalar(), {}, in.where(entry.first)};
    const auto earlier = std::find_if(out.layouts.begin(), out.layouts.end(),
                                      [&](const Layout& l) { return l.name == layout.name; });
    if (earlier != out.layouts.end() && replaced_by_child(in, earlier->where)) continue;
    const std::string what = fmt::format("layout '{}'", layout.name);
    if (!in.check_map(entry.second, what, {"description", "members"})) continue;
    in.string_field(entry.second, "description", what, false);
    const YAML::Node members = YamlReader::field(entry.second, "members");
    if (!members.IsDefined()) {
      in.error(entry.first, fmt::format("{} is missing required key 'members'", what));
      continue;
    }
    if (!in.check_open_map(members, "members of " + what)) continue;
    if (members.size() == 0) in.error(members, fmt::format("{} has no members", what));
    for (const auto& member_entry : members) {
      if (!member_entry.first.IsScalar()) continue;
      LayoutMember member;
      member.suffix = member_entry.first.Scalar();
      if (!is_component(member.suffix)) {
        in.error(member_entry.first,
                 fmt::format("member suffix '{}' of {} must be one name component (non-empty, no '.')",
                             member.suffix, what));
      }
      for (const auto& other : out.layouts) {
        if (other.find(member.suffix) != nullptr) {
          in.error(member_entry.first,
                   fmt::format("member suffix '{}' of {} is already claimed by layout '{}' ({}){}",
                               member.suffix, what, other.name, short_where(in, other.where),
                               replaced_by_child(in, other.where)
                                   ? " (a layout of the same name replaces an inherited one)"
                                   : ""));
        }
      }
      read_member(in, member_entry.first, member_entry.second, layout.name, out, member);
      if (layout.find(member.suffix) == nullptr) layout.members.push_back(std::move(member));
    }
    out.layouts.push_back(std::move(layout));
  }
  for (std::size_t l = 0; l < out.layouts.size(); ++l) {
    for (std::size_t m = 0; m < out.layouts[l].members.size(); ++m) {
      out.members.emplace(out.layouts[l].members[m].suffix, std::make_pair(l, m));
    }
  }
}

}  // namespace shardwise::rules::detail
