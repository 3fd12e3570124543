// `rules scaffold`: the draft rules file, written from what names.cpp, modules.cpp and splits.cpp
// learnt. Every text taken from the checkpoint is quoted (YAML) and escaped (RE2).
#include <shardwise/scaffold/scaffold.hpp>

#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>
#include <re2/re2.h>

#include <shardwise/core/error.hpp>

#include "scaffold/model.hpp"

namespace shardwise::scaffold {
namespace {

// Text from the command line, safe in a comment or a quoted scalar: control characters as '?'.
std::string one_line(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = '?';
  }
  return out;
}

// A YAML single-quoted scalar (names with control characters were refused before).
std::string quoted(std::string_view text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// Plain when YAML reads it back as the same string, quoted otherwise.
std::string yaml_key(std::string_view text) {
  static constexpr std::array<std::string_view, 11> kSpecial{"true", "false", "null", "yes", "no", "on",
                                                             "off",  "y",     "n",    "~",   "<<"};
  const bool plain = !text.empty() &&
                     (std::isalpha(static_cast<unsigned char>(text[0])) != 0 || text[0] == '_') &&
                     std::all_of(text.begin(), text.end(), [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
                     });
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  const bool special = std::find(kSpecial.begin(), kSpecial.end(), lower) != kSpecial.end();
  return plain && !special ? std::string(text) : quoted(text);
}

std::string dim(std::string_view axis, std::uint64_t divisor) {
  return divisor == 1 ? std::string(axis) : fmt::format("{}/{}", axis, divisor);
}

void write_header(std::string& out, std::size_t tensors, const ScaffoldOptions& options) {
  const std::string source = options.source.empty() ? std::string("a checkpoint") : one_line(options.source);
  out += fmt::format(
      "# Draft rules for {}, written by `shardwise rules scaffold` from its headers alone ({} tensors).\n"
      "# Each `guess:` comment is one: read them, edit, then\n"
      "#   shardwise rules check FILE\n"
      "#   shardwise plan -i CHECKPOINT --rules FILE -m MP\n"
      "#   shardwise explain --rules FILE NAME...\n"
      "# Splits are guessed for mp={}: each divides there without cutting a packing unit, a quantisation\n"
      "# group or a scale block. No name is renamed, normalized or skipped. docs/rules.md explains it all.\n",
      source, tensors, options.model_parallel);
  out += fmt::format("shardwise: 1\nname: {}\ndescription: {}\n", quoted(one_line(options.name)),
                     quoted("draft from " + source));
}

void write_params(std::string& out, const std::vector<Scope>& scopes) {
  if (scopes.empty()) return;
  out +=
      "\n# Counts of the indexed scopes below, as found in the checkpoint (the default plans it).\nparams:\n";
  for (const Scope& s : scopes) {
    std::vector<std::string> paths;
    for (const auto& p : s.paths) paths.push_back(path_text(p));
    const std::string found = s.fewest == s.count ? fmt::format("{} in each of {}", s.count, s.instances)
                                                  : fmt::format("indices up to {} in {}, the fewest {}",
                                                                s.count - 1, s.instances, s.fewest);
    out +=
        fmt::format("  {}:\n    default: {}\n    help: {}\n", s.param, s.count,
                    quoted(fmt::format("{} per {} (found {})", s.collection, fmt::join(paths, ", "), found)));
  }
}

void write_outputs(std::string& out, const ScaffoldOptions& options) {
  out += "\noutput:\n  file: \"model{rank}-mp{mp}.safetensors\"\n";
  if (!options.side_files.empty()) {
    std::vector<std::string> files;
    for (const auto& f : options.side_files) files.push_back(quoted(f));
    out += fmt::format(
        "# Every other file of the checkpoint folder: keep the ones the outputs need.\nside_files: [{}]\n",
        fmt::join(files, ", "));
  }
  out +=
      "# Every key is in the table: a tensor added later stops the plan instead of being guessed.\n"
      "unknown_keys: error\n";
}

std::string dtypes_text(const std::vector<st::DType>& dtypes) {
  std::vector<std::string_view> names;
  for (const st::DType d : dtypes) names.push_back(st::dtype_name(d));
  return fmt::format("[{}]", fmt::join(names, ", "));
}

void write_layouts(std::string& out, const Modules& modules, const std::array<std::string, 3>& suffixes) {
  for (const BlockScales& b : modules.block_scales) {
    out += fmt::format(
        "\n# {} weights with block scales: {} pairs, {}, e.g. {}.\n# A scale is a plain tensor "
        "with its weight's key, so it takes the same split (a layout cannot claim a suffix that\n# other "
        "tensors also end with); splits below keep whole blocks on each rank.\n",
        st::dtype_name(b.dtype), b.pairs,
        b.block == 0 ? std::string("blocks of several sizes")
                     : fmt::format("blocks of {}x{}", b.block, b.block),
        b.example);
  }
  if (modules.packings.empty()) return;
  out += "\n# Packed groups found from their shapes (factors derived from them).\nlayouts:\n";
  for (const Packing& p : modules.packings) {
    const bool gptq = p.kind == PackKind::gptq;
    out +=
        fmt::format("  {}:\n    description: {}\n    members:\n", p.name,
                    quoted(fmt::format(
                        "{} packing: {} values per element along {}, group size {} ({} groups, e.g. {})",
                        gptq ? "GPTQ" : "AWQ", p.pack, gptq ? "in" : "out", p.group, p.groups, p.example)));
    const std::string weight =
        gptq ? fmt::format("[{}, out]", dim("in", p.pack)) : fmt::format("[in, {}]", dim("out", p.pack));
    const std::string shapes[3] = {weight, fmt::format("[{}, {}]", dim("in", p.group), dim("out", p.pack)),
                                   fmt::format("[{}, out]", dim("in", p.group))};
    for (std::size_t m = 0; m < 3; ++m) {
      out += fmt::format("      {}: {{shape: {}, dtype: {}}}\n", suffixes[m], shapes[m],
                         dtypes_text(p.dtypes[m]));
    }
  }
}

std::string alternatives(const std::vector<std::string>& words) {
  std::vector<std::string> escaped;
  for (const auto& w : words) escaped.push_back(RE2::QuoteMeta(w));
  return fmt::format("{}", fmt::join(escaped, "|"));
}

void write_keys(std::string& out, const Names& names) {
  out +=
      "\n# The key is the module's name (the second-to-last component); a parameter directly under a\n"
      "# container or an index is its own key.\nkeys:\n";
  for (const ParameterGroup& g : names.parameters) {
    const std::string where = g.parent.empty() ? std::string("top-level") : path_text(g.parent);
    const std::string parent = g.parent.empty() ? std::string("^") : "^" + path_regex(g.parent) + "\\.";
    out += fmt::format("  - name: {}\n    match: {}\n", quoted(where + " parameters"),
                       quoted(fmt::format("{}(?P<key>{})$", parent, alternatives(g.leaves))));
  }
  const bool modules =
      std::any_of(names.names.begin(), names.names.end(), [](const Name& n) { return !n.bare; });
  if (modules) out += "  - name: module\n    match: '(?P<key>[^.]+)\\.[^.]+$'\n";
}

void write_table(std::string& out, const std::vector<KeyRow>& rows) {
  out += "\ntable:\n";
  for (const KeyRow& row : rows) {
    out += fmt::format("  {}: {{split: {}}}  # {}\n", yaml_key(row.key), split_name(row.split), row.comment);
  }
}

void write_overrides(std::string& out, const std::vector<KeyRow>& rows) {
  bool any = false;
  for (const KeyRow& row : rows) {
    for (std::size_t i = 0; i < row.replicated_leaves.size(); ++i) {
      if (!any) out += "\n# Tensors beside a split weight that do not follow its split.\noverrides:\n";
      any = true;
      const std::string& leaf = row.replicated_leaves[i];
      out += fmt::format(
          "  - name: {}\n    match: {}\n    split: replicate  # {}\n", quoted(row.key + "." + leaf),
          quoted(fmt::format("(?:^|\\.){}\\.{}$", RE2::QuoteMeta(row.key), RE2::QuoteMeta(leaf))),
          row.leaf_reasons[i]);
    }
  }
}

void write_ownership(std::string& out, const std::vector<Scope>& scopes) {
  if (scopes.empty()) return;
  out +=
      "\n# Items of an indexed scope (inside a layer, beside other modules) go whole to rank\n"
      "# index / (count / mp). A guess: delete a rule to split its items like the rest.\nownership:\n";
  for (const Scope& s : scopes) {
    const std::string index = "\\.(?P<index>[0-9]+)(?:\\.|$)";
    if (s.loose) {
      out += fmt::format("  - name: {}\n    match: {}\n    count: {}\n", quoted(s.collection),
                         quoted("(?:^|\\.)" + RE2::QuoteMeta(s.collection) + index), s.param);
      continue;
    }
    for (const std::string& path : s.paths) {
      out += fmt::format("  - name: {}\n    match: {}\n    count: {}\n", quoted(path_text(path)),
                         quoted("^" + path_regex(path) + index), s.param);
    }
  }
}

}  // namespace

std::optional<PackedSuffixes> packed_suffixes_of(const Layout& layout) {
  if (layout.members.size() != 3) return std::nullopt;
  const auto divisor = [](const LayoutMember& m, Split axis) {
    for (const MemberDim& d : m.dims) {
      if (d.axis == axis) return d.divisor;
    }
    return std::uint64_t{0};
  };
  const LayoutMember* zeros = nullptr;
  std::vector<const LayoutMember*> others;
  for (const LayoutMember& m : layout.members) {
    if (divisor(m, Split::out) == 0 || divisor(m, Split::in) == 0) return std::nullopt;  // not [out, in]
    if (divisor(m, Split::out) > 1) {
      if (zeros != nullptr) return std::nullopt;
      zeros = &m;
    } else {
      others.push_back(&m);
    }
  }
  if (zeros == nullptr || others.size() != 2) return std::nullopt;
  const std::uint64_t in0 = divisor(*others[0], Split::in), in1 = divisor(*others[1], Split::in);
  if (in0 == in1) return std::nullopt;
  const LayoutMember& weight = in0 < in1 ? *others[0] : *others[1];
  const LayoutMember& scales = in0 < in1 ? *others[1] : *others[0];
  return PackedSuffixes{weight.suffix, zeros->suffix, scales.suffix};
}

std::string scaffold_rules(std::span<const TensorHeader> tensors, const ScaffoldOptions& options) {
  if (tensors.empty()) throw Error(ErrorKind::input, "cannot write rules for a checkpoint without tensors");
  if (options.packed.weight.empty() || options.packed.zeros.empty() || options.packed.scales.empty()) {
    throw Error(ErrorKind::usage, "scaffold_rules: the packed triple's suffixes are not given");
  }
  Names names = analyse_names(tensors);
  names.packed = {options.packed.weight, options.packed.zeros, options.packed.scales};
  const Modules modules = find_modules(tensors, names);
  const std::vector<KeyRow> rows =
      guess_splits(tensors, names, modules, std::max<std::uint64_t>(options.model_parallel, 1));
  std::string out;
  write_header(out, tensors.size(), options);
  write_params(out, names.scopes);
  write_outputs(out, options);
  write_layouts(out, modules, names.packed);
  write_keys(out, names);
  write_table(out, rows);
  write_overrides(out, rows);
  write_ownership(out, names.scopes);
  return out;
}

}  // namespace shardwise::scaffold
