#include "plan/block_pairs.hpp"

#include <algorithm>
#include <array>
#include <numeric>
#include <set>
#include <string_view>
#include <unordered_map>

#include <fmt/ranges.h>

#include <fmt/format.h>

#include <shardwise/plan/plan_view.hpp>

namespace shardwise::plan::detail {
namespace {

using Kind = rules::TransformRule::Kind;

constexpr std::uint64_t kGroup = 32;  // FP4 elements per E8M0 scale of a re-quantised weight

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// The companion's name for the tensor named `name`: `{stem}` is `name` without its last component.
std::string companion_name(const rules::NameTemplate& companion, std::string_view name) {
  const auto dot = name.rfind('.');
  std::array<std::string_view, rules::kCompanionFields.size()> values;
  values[rules::kNameField] = name;
  values[rules::kStemField] = dot == std::string_view::npos ? name : name.substr(0, dot);
  return companion.expand(values);
}

std::string_view dim_word(int dim) { return dim == 0 ? "rows" : "columns"; }

// The shape a slice of `source` has.
st::Shape sliced_shape(const Source& source, const Slice& slice) {
  st::Shape shape = source.shape;
  if (!slice.whole()) shape[static_cast<std::size_t>(slice.dim)] = slice.end - slice.begin;
  return shape;
}

bool same_slice(const Slice& a, const Slice& b) {
  return a.whole() == b.whole() && (a.whole() || (a.dim == b.dim && a.begin == b.begin && a.end == b.end));
}

std::string slice_text(const Slice& slice) {
  return slice.whole() ? "whole" : fmt::format("dim{}[{}:{}]", slice.dim, slice.begin, slice.end);
}

class Resolver {
 public:
  Resolver(Plan& plan, const st::Checkpoint& checkpoint, RuleLabels& labels, Diagnostics& problems,
           const std::vector<const rules::TransformRule*>& rules)
      : plan_(plan), checkpoint_(checkpoint), labels_(labels), problems_(problems), rules_(rules) {}

  void rank(OutputFile& out) {
    std::vector<bool> consumed(out.tensors.size(), false);
    for (std::size_t i = 0; i < out.tensors.size(); ++i) {
      PlannedTensor& t = out.tensors[i];
      if (t.companion == kNoCompanion) continue;
      const rules::TransformRule& rule = *rules_[t.companion];
      t.companion = kNoCompanion;
      pair(out, t, rule, consumed);
    }
    std::size_t kept = 0;
    for (std::size_t i = 0; i < out.tensors.size(); ++i) {
      if (consumed[i]) {
        out.bytes -= out.tensors[i].bytes;
      } else {
        if (kept != i) out.tensors[kept] = std::move(out.tensors[i]);
        ++kept;
      }
    }
    out.tensors.resize(kept);
  }

 private:
  struct Grid {
    std::uint64_t block_rows, block_cols, rows, cols;  // of the weight, in logical elements
  };
  using Grid_ = Grid;
  using Packing_ = plan::Packing;

  // The tensor named `name` on this rank (tensors are sorted by name), or nullopt.
  static std::optional<std::size_t> on_rank(const OutputFile& out, const std::string& name) {
    const auto it = std::lower_bound(out.tensors.begin(), out.tensors.end(), name,
                                     [](const PlannedTensor& t, const std::string& n) { return t.name < n; });
    if (it == out.tensors.end() || it->name != name) return std::nullopt;
    return static_cast<std::size_t>(it - out.tensors.begin());
  }

  // The input tensor named `name`, as a source of the plan (added once), or nullopt.
  std::optional<std::size_t> in_checkpoint(const std::string& name) {
    if (inputs_.empty()) {
      for (const st::TensorRef& ref : checkpoint_.tensors()) inputs_.emplace(ref.info->name, &ref);
    }
    if (const auto known = input_sources_.find(name); known != input_sources_.end()) return known->second;
    const auto it = inputs_.find(name);
    if (it == inputs_.end()) return std::nullopt;
    const st::TensorRef& ref = *it->second;
    const st::File& file = checkpoint_.files()[ref.file];
    plan_.sources.push_back(Source{ref.file, ref.info->name, ref.info->dtype, ref.info->shape,
                                   file.absolute_offset(*ref.info), ref.info->bytes()});
    input_sources_.emplace(name, plan_.sources.size() - 1);
    return plan_.sources.size() - 1;
  }

  std::string where(const OutputFile& out, const PlannedTensor& t, const rules::TransformRule& rule) const {
    return fmt::format("{} on rank {} ({} at {})", t.name, out.rank, rule.rule.label, rule.rule.where.str());
  }

  void pair(OutputFile& out, PlannedTensor& t, const rules::TransformRule& rule,
            std::vector<bool>& consumed) {
    if (rule.kind == Kind::dequantize_packed) {
      pair_packed(out, t, rule);
      return;
    }
    if (rule.kind == Kind::dequantize &&
        (rule.grid != rules::TransformRule::Grid::block || !rule.companion_alternatives.empty() ||
         rule.to != st::DType::BF16 || !rule.grid_rows.param.empty() || !rule.grid_cols.param.empty())) {
      pair_scaled(out, t, rule, consumed);
      return;
    }
    if (plan_.sources[t.source].shape.size() != 2) {
      problems_.add(fmt::format("{}: needs a tensor of 2 dims, not {}", where(out, t, rule),
                                st::shape_text(plan_.sources[t.source].shape)));
      return;
    }
    const std::string name = companion_name(
        rule.companion,
        rule.lookup == rules::TransformRule::Lookup::output ? t.name : plan_.sources[t.source].name);
    // The weight's slice is checked against the block grid first: a split that cuts a block is the
    // error to report, whatever became of the companion.
    const Source& weight = plan_.sources[t.source];
    Grid grid{rule.block_rows, rule.block_cols, weight.shape[0], weight.shape[1]};
    if (rule.kind == Kind::requantize) grid = {1, kGroup, weight.shape[0], weight.shape[1] * 2};
    if (rule.kind == Kind::dequantize && !on_grid(out, t, rule, grid, 1, name)) return;
    if (rule.kind == Kind::requantize && !whole_blocks_of_128(out, t, rule, weight, t.slice, 1, 2)) return;
    if (rule.kind == Kind::requantize_scale && !whole_blocks_of_128(out, t, rule, weight, t.slice, 1, kGroup))
      return;
    std::optional<std::size_t> companion;
    std::optional<std::size_t> placed;  // on this rank
    Slice placed_slice;
    if (rule.lookup == rules::TransformRule::Lookup::output) {
      placed = on_rank(out, name);
      if (placed) {
        companion = out.tensors[*placed].source;
        placed_slice = out.tensors[*placed].slice;
      }
    } else {
      companion = in_checkpoint(name);
    }
    if (!companion) {
      missing(out, t, rule, name);
      return;
    }
    // Looked up first: a companion found by input name is appended to Plan::sources.
    const Source& src = plan_.sources[t.source];
    const Source& scale = plan_.sources[*companion];
    switch (rule.kind) {
      case Kind::dequantize: {
        if (!check_companion(out, t, rule, scale, {st::DType::F8_E8M0, st::DType::F32},
                             {ceil_div(grid.rows, grid.block_rows), ceil_div(grid.cols, grid.block_cols)}))
          return;
        const Slice slice = companion_slice(t, grid, scale, 1);
        if (placed && !matches(out, t, rule, scale, placed_slice, slice)) return;
        if (placed && out.tensors[*placed].cast != Cast::none) {
          problems_.add(
              fmt::format("{}: its block scale {} is itself transformed; a dequantization consumes it as "
                          "it is",
                          where(out, t, rule), name));
          return;
        }
        if (placed) consumed[*placed] = true;
        add(t, rule, *companion, slice, grid.block_rows, grid.block_cols);
        cut_on_grid(t, grid.block_rows, grid.block_cols);
        return;
      }
      case Kind::requantize: {
        if (!check_companion(out, t, rule, scale, {st::DType::F8_E8M0}, {grid.rows, grid.cols / kGroup}))
          return;
        const Slice slice = companion_slice(t, grid, scale, 2);
        if (placed && !matches(out, t, rule, scale, placed_slice, slice)) return;
        add(t, rule, *companion, slice, 1, kGroup);
        cut_on_grid(t, 128, 128);
        return;
      }
      case Kind::requantize_scale: {
        // The new scale depends on the old one only; the weight beside it is checked, never read.
        if (!check_companion(out, t, rule, scale, {st::DType::I8}, {src.shape[0], src.shape[1] * 16})) return;
        add(t, rule, *companion, Slice{}, 128, 128);
        return;
      }
      case Kind::reinterpret:
      case Kind::dequantize_packed:
      case Kind::permute_rope:
        return;
    }
  }

  // The companion named by the first of `templates` that exists (on this rank or in the checkpoint,
  // per the rule's lookup); every name tried when none does.
  struct Found {
    std::optional<std::size_t> source;
    std::optional<std::size_t> placed;
    std::string name;
  };
  Found find_companion(const OutputFile& out, const PlannedTensor& t, const rules::TransformRule& rule) {
    const std::string& base =
        rule.lookup == rules::TransformRule::Lookup::output ? t.name : plan_.sources[t.source].name;
    Found found;
    std::vector<std::string> tried;
    std::vector<const rules::NameTemplate*> templates{&rule.companion};
    for (const rules::NameTemplate& alternative : rule.companion_alternatives)
      templates.push_back(&alternative);
    for (const rules::NameTemplate* name_template : templates) {
      std::string name = companion_name(*name_template, base);
      if (rule.lookup == rules::TransformRule::Lookup::output) {
        found.placed = on_rank(out, name);
        if (found.placed) found.source = out.tensors[*found.placed].source;
      } else {
        found.source = in_checkpoint(name);
      }
      if (found.source) {
        found.name = std::move(name);
        return found;
      }
      tried.push_back(std::move(name));
    }
    found.name = fmt::format("{}", fmt::join(tried, " or "));
    return found;
  }

  // An FP8 dequantization with any scale convention: the scale found by the first template that
  // exists, its grid given (a block of numbers or parameters, per channel, per tensor) or inferred
  // from the scale's shape; F32, BF16, F16 or E8M0 scales; BF16 or F16 written.
  void pair_scaled(OutputFile& out, PlannedTensor& t, const rules::TransformRule& rule,
                   std::vector<bool>& consumed) {
    using RuleGrid = rules::TransformRule::Grid;
    const Source& weight = plan_.sources[t.source];
    if (weight.shape.size() != 2) {
      problems_.add(fmt::format("{}: needs a tensor of 2 dims, not {}", where(out, t, rule),
                                st::shape_text(weight.shape)));
      return;
    }
    const rules::Params params(plan_.params.begin(), plan_.params.end());
    const std::uint64_t block_rows = rule.grid_rows.resolve(params);
    const std::uint64_t block_cols = rule.grid_cols.resolve(params);
    if (rule.grid == RuleGrid::block && (block_rows == 0 || block_cols == 0)) {
      problems_.add(fmt::format("{}: its block [{}, {}] ({}={}, {}={}) must be positive", where(out, t, rule),
                                block_rows, block_cols, rule.grid_rows.text(), block_rows,
                                rule.grid_cols.text(), block_cols));
      return;
    }
    const Found found = find_companion(out, t, rule);
    if (!found.source) {
      missing(out, t, rule, found.name);
      return;
    }
    const Source& src = plan_.sources[t.source];
    const Source& scale = plan_.sources[*found.source];
    const std::uint64_t rows = src.shape[0];
    const std::uint64_t cols = src.shape[1];
    const st::Shape block_shape{ceil_div(rows, std::max<std::uint64_t>(block_rows, 1)),
                                ceil_div(cols, std::max<std::uint64_t>(block_cols, 1))};
    const bool one = st::element_count(scale.shape).value_or(0) == 1 && scale.shape.size() <= 2;
    const bool channel = scale.shape == st::Shape{rows, 1};
    RuleGrid grid = rule.grid;
    if (grid == RuleGrid::infer) {
      grid = scale.shape == block_shape ? RuleGrid::block
             : channel                  ? RuleGrid::per_channel
             : one                      ? RuleGrid::per_tensor
                                        : RuleGrid::infer;
    }
    Grid_ g{block_rows, block_cols, rows, cols};
    std::string expected;
    bool shape_ok = false;
    switch (grid) {
      case RuleGrid::block:
        shape_ok = scale.shape == block_shape;
        expected = fmt::format("{} (blocks of {}x{})", st::shape_text(block_shape), block_rows, block_cols);
        break;
      case RuleGrid::per_channel:
        g = {1, kWholeBlock, rows, cols};
        shape_ok = channel;
        expected = fmt::format("{} (one scale per row)", st::shape_text(st::Shape{rows, 1}));
        break;
      case RuleGrid::per_tensor:
        g = {kWholeBlock, kWholeBlock, rows, cols};
        shape_ok = one;
        expected = "[] or [1] (one scale)";
        break;
      case RuleGrid::infer:
        expected = fmt::format("{} (blocks of {}x{}), [{}, 1] (per channel), [] or [1] (per tensor)",
                               st::shape_text(block_shape), block_rows, block_cols, rows);
        break;
    }
    static constexpr std::array kScaleDtypes{st::DType::F32, st::DType::BF16, st::DType::F16,
                                             st::DType::F8_E8M0};
    const bool dtype_ok =
        std::find(kScaleDtypes.begin(), kScaleDtypes.end(), scale.dtype) != kScaleDtypes.end();
    if (!shape_ok || !dtype_ok) {
      problems_.add(fmt::format("{}: its scale {} is {}{}, expected F32, BF16, F16 or F8_E8M0 {} for {}{}",
                                where(out, t, rule), scale.name, st::dtype_name(scale.dtype),
                                st::shape_text(scale.shape), expected, st::dtype_name(src.dtype),
                                st::shape_text(src.shape)));
      return;
    }
    if (!on_grid_of(out, t, rule, g, found.name)) return;
    Slice slice;
    if (!t.slice.whole()) {
      const int dim = t.slice.dim;
      const std::uint64_t block = dim == 0 ? g.block_rows : g.block_cols;
      slice = make_slice(dim, t.slice.begin / block, ceil_div(t.slice.end, block),
                         scale.shape[static_cast<std::size_t>(dim)]);
    }
    if (found.placed) {
      if (!matches(out, t, rule, scale, out.tensors[*found.placed].slice, slice)) return;
      if (out.tensors[*found.placed].cast != Cast::none) {
        problems_.add(
            fmt::format("{}: its scale {} is itself transformed; a dequantization consumes it as it is",
                        where(out, t, rule), found.name));
        return;
      }
      consumed[*found.placed] = true;
    }
    add(t, rule, *found.source, slice, g.block_rows, g.block_cols);
    if (g.block_rows != kWholeBlock && g.block_cols != kWholeBlock)
      cut_on_grid(t, g.block_rows, g.block_cols);
  }

  bool on_grid_of(const OutputFile& out, const PlannedTensor& t, const rules::TransformRule& rule,
                  const Grid_& g, const std::string& scale) {
    if (t.slice.whole()) return true;
    const int dim = t.slice.dim;
    const std::uint64_t block = dim == 0 ? g.block_rows : g.block_cols;
    const std::uint64_t size = dim == 0 ? g.rows : g.cols;
    if (t.slice.begin % block == 0 && (t.slice.end % block == 0 || t.slice.end == size)) return true;
    problems_.add(fmt::format("{}: {} {}-{} of {} (mp={}) are not a whole number of blocks of its scale {}{}",
                              where(out, t, rule), dim_word(dim), t.slice.begin, t.slice.end, size,
                              plan_.model_parallel, scale,
                              block == kWholeBlock ? " (one scale across them: written whole only)" : ""));
    return false;
  }

  // An integer-packed weight (GPTQ, AWQ), whole: its zeros, scales and optional group index found
  // in the checkpoint by the rule's templates, and every member's shape checked against the
  // packing (every problem of the weight reported). The output becomes [out, in].
  void pair_packed(OutputFile& out, PlannedTensor& t, const rules::TransformRule& rule) {
    using Packing = rules::TransformRule::Packing;
    const Source codes = plan_.sources[t.source];
    const std::string& input = codes.name;
    const auto dot = input.rfind('.');
    const std::string_view stem =
        dot == std::string::npos ? std::string_view(input) : std::string_view(input).substr(0, dot);
    const auto expand = [&](const rules::NameTemplate& name_template) {
      std::array<std::string_view, rules::kCompanionFields.size()> values;
      values[rules::kNameField] = input;
      values[rules::kStemField] = stem;
      return name_template.expand(values);
    };
    const std::string where_text =
        fmt::format("{} ({} at {})", input, rule.rule.label, rule.rule.where.str());
    const rules::Params params(plan_.params.begin(), plan_.params.end());
    const std::uint64_t bits = rule.bits.resolve(params);
    const std::uint64_t group_size_param = rule.group_size.resolve(params);
    std::vector<std::string> wrong;
    const std::string zeros_name = expand(rule.zeros);
    const std::string scales_name = expand(rule.companion);
    const std::optional<std::size_t> zeros = in_checkpoint(zeros_name);
    const std::optional<std::size_t> scales = in_checkpoint(scales_name);
    std::optional<std::size_t> group_index;
    if (rule.group_index) group_index = in_checkpoint(expand(*rule.group_index));
    if (!zeros) wrong.push_back(fmt::format("its zeros {} are not in the checkpoint", zeros_name));
    if (!scales) wrong.push_back(fmt::format("its scales {} are not in the checkpoint", scales_name));
    const bool awq = rule.packing == Packing::awq;
    if (awq ? bits != 4 : (bits != 2 && bits != 4 && bits != 8)) {
      // Once per rule: every packed weight would say the same.
      if (!bad_width_.insert(&rule).second) return;
      wrong.push_back(fmt::format("{}={} is not a width handled ({}; every packed weight is refused)",
                                  rule.bits.text(), bits, awq ? "AWQ: 4" : "GPTQ: 2, 4 or 8"));
    }
    if (!wrong.empty()) {
      problems_.add(fmt::format("{}: {}", where_text, fmt::join(wrong, "; ")));
      return;
    }
    const std::uint64_t per_word = 32 / bits;
    // [out, in] from the codes: GPTQ packs along in ([in/per_word, out]), AWQ along out ([in, out/per_word]).
    const std::uint64_t in = awq ? codes.shape[0] : codes.shape[0] * per_word;
    const std::uint64_t out_dim = awq ? codes.shape[1] * per_word : codes.shape[1];
    const std::uint64_t group_size =
        group_size_param == 0 ? std::max<std::uint64_t>(in, 1) : group_size_param;
    const std::uint64_t groups = ceil_div(in, group_size);
    const Source& z = plan_.sources[*zeros];
    const Source& s = plan_.sources[*scales];
    const auto describe = [](const Source& src) {
      return fmt::format("{} {}{}", src.name, st::dtype_name(src.dtype), st::shape_text(src.shape));
    };
    const std::string packing_text = fmt::format("{} {}-bit, group {} ({}={}{})",
                                                 awq                             ? "awq"
                                                 : rule.packing == Packing::gptq ? "gptq"
                                                                                 : "gptq_v2",
                                                 bits, group_size, rule.group_size.text(), group_size_param,
                                                 group_size_param == 0 ? ": one group" : "");
    if (!awq && out_dim * bits % 32 != 0) {
      wrong.push_back(fmt::format("out={} does not fill whole {}-bit zero words", out_dim, bits));
    }
    const st::Shape zeros_shape{groups, out_dim * bits / 32};
    const st::Shape scales_shape{groups, out_dim};
    if (z.dtype != st::DType::I32 || z.shape != zeros_shape) {
      wrong.push_back(fmt::format("zeros {}, expected I32{}", describe(z), st::shape_text(zeros_shape)));
    }
    if ((s.dtype != st::DType::F16 && s.dtype != st::DType::BF16 && s.dtype != st::DType::F32) ||
        s.shape != scales_shape) {
      wrong.push_back(
          fmt::format("scales {}, expected F16, BF16 or F32{}", describe(s), st::shape_text(scales_shape)));
    }
    if (group_index) {
      const Source& g = plan_.sources[*group_index];
      if ((g.dtype != st::DType::I32 && g.dtype != st::DType::I64) || g.shape != st::Shape{in}) {
        wrong.push_back(fmt::format("group index {}, expected I32 or I64[{}]", describe(g), in));
      }
    }
    if (!wrong.empty()) {
      problems_.add(fmt::format("{}: {}{} gives [out, in] = [{}, {}] and {} groups, but {}", where_text,
                                describe(codes), fmt::format(" as {}", packing_text), out_dim, in, groups,
                                fmt::join(wrong, "; ")));
      return;
    }
    out.bytes -= t.bytes;
    t.shape = {out_dim, in};
    t.bytes = st::byte_size(t.dtype, t.shape).value_or(0);
    out.bytes += t.bytes;
    add(t, rule, *scales, Slice{}, 1, 1);
    Companion& c = plan_.companions.back();
    c.zeros = *zeros;
    c.group_index = group_index.value_or(kNoSource);
    c.packing = awq ? Packing_::awq : rule.packing == Packing::gptq ? Packing_::gptq : Packing_::gptq_v2;
    c.bits = static_cast<std::uint8_t>(bits);
    c.group_size = group_size;
    c.out = out_dim;
    c.in = in;
  }

  void missing(OutputFile& out, PlannedTensor& t, const rules::TransformRule& rule, const std::string& name) {
    const Source& src = plan_.sources[t.source];
    const std::string looked = rule.lookup == rules::TransformRule::Lookup::output
                                   ? fmt::format("not placed on rank {}", out.rank)
                                   : "not in the checkpoint";
    if (rule.kind != Kind::dequantize || rule.missing != rules::TransformRule::Missing::keep) {
      problems_.add(
          fmt::format("{}: needs its companion {}, which is {}", where(out, t, rule), name, looked));
      return;
    }
    std::string note =
        fmt::format("{}: no block scale {} ({}): written unchanged as {} ({} at {})", t.name, name, looked,
                    st::dtype_name(src.dtype), rule.rule.label, rule.rule.where.str());
    // Once for a tensor written on several ranks.
    if (std::find(plan_.notes.begin(), plan_.notes.end(), note) == plan_.notes.end())
      plan_.notes.push_back(std::move(note));
    out.bytes -= t.bytes;
    t.dtype = src.dtype;
    t.cast = Cast::none;
    t.shape = sliced_shape(src, t.slice);
    t.bytes = st::byte_size(t.dtype, t.shape).value_or(0);
    out.bytes += t.bytes;
  }

  bool check_companion(const OutputFile& out, const PlannedTensor& t, const rules::TransformRule& rule,
                       const Source& scale, std::initializer_list<st::DType> dtypes,
                       const st::Shape& expected) {
    const bool dtype_ok = std::find(dtypes.begin(), dtypes.end(), scale.dtype) != dtypes.end();
    if (dtype_ok && scale.shape == expected) return true;
    std::vector<std::string> names;
    for (const st::DType d : dtypes) names.emplace_back(st::dtype_name(d));
    problems_.add(fmt::format("{}: its companion {} is {}{}, expected {}{} for {}{}", where(out, t, rule),
                              scale.name, st::dtype_name(scale.dtype), st::shape_text(scale.shape),
                              fmt::format("{}", fmt::join(names, " or ")), st::shape_text(expected),
                              st::dtype_name(plan_.sources[t.source].dtype),
                              st::shape_text(plan_.sources[t.source].shape)));
    return false;
  }

  // Whether the weight's slice is a whole number of blocks (reported when not). `unit`: logical
  // elements per stored element of dim 1.
  bool on_grid(const OutputFile& out, const PlannedTensor& t, const rules::TransformRule& rule,
               const Grid& grid, std::uint64_t unit, const std::string& scale) {
    if (t.slice.whole()) return true;
    const int dim = t.slice.dim;
    const std::uint64_t block = dim == 0 ? grid.block_rows : grid.block_cols;
    const std::uint64_t size = dim == 0 ? grid.rows : grid.cols;
    const std::uint64_t begin = t.slice.begin * (dim == 0 ? 1 : unit);
    const std::uint64_t end = t.slice.end * (dim == 0 ? 1 : unit);
    if (begin % block == 0 && (end % block == 0 || end == size)) return true;
    problems_.add(
        fmt::format("{}: {} {}-{} of {} (mp={}) are not a whole number of {}-{} blocks of its block "
                    "scale {}",
                    where(out, t, rule), dim_word(dim), begin, end, size, plan_.model_parallel, block,
                    dim == 0 ? "row" : "column", scale));
    return false;
  }

  // The slice of the companion that covers the weight's slice (on the grid: checked before).
  static Slice companion_slice(const PlannedTensor& t, const Grid& grid, const Source& scale,
                               std::uint64_t unit) {
    if (t.slice.whole()) return Slice{};
    const int dim = t.slice.dim;
    const std::uint64_t block = dim == 0 ? grid.block_rows : grid.block_cols;
    const std::uint64_t begin = t.slice.begin * (dim == 0 ? 1 : unit);
    const std::uint64_t end = t.slice.end * (dim == 0 ? 1 : unit);
    return make_slice(dim, begin / block, ceil_div(end, block), scale.shape[static_cast<std::size_t>(dim)]);
  }

  bool matches(const OutputFile& out, const PlannedTensor& t, const rules::TransformRule& rule,
               const Source& scale, const Slice& placed, const Slice& expected) {
    if (same_slice(placed, expected)) return true;
    problems_.add(fmt::format("{}: its block scale {} is placed as {}, but the weight's slice {} needs {}",
                              where(out, t, rule), scale.name, slice_text(placed), slice_text(t.slice),
                              slice_text(expected)));
    return false;
  }

  // A re-quantised tensor is made of 128 x 128 blocks: the slice (in logical elements, `unit` per
  // stored element of dim 1 and `row_unit` of dim 0) must start and end on block edges.
  bool whole_blocks_of_128(const OutputFile& out, const PlannedTensor& t, const rules::TransformRule& rule,
                           const Source& src, const Slice& slice, std::uint64_t row_unit,
                           std::uint64_t unit) {
    const st::Shape shape = sliced_shape(src, slice);
    const std::uint64_t rows = shape[0] * row_unit;
    const std::uint64_t cols = shape[1] * unit;
    const std::uint64_t begin = slice.whole() ? 0 : slice.begin * (slice.dim == 0 ? row_unit : unit);
    if (rows % 128 == 0 && cols % 128 == 0 && begin % 128 == 0) return true;
    problems_.add(fmt::format("{}: {} [{}, {}] (from {}{}, slice {}) is not a whole number of 128x128 blocks",
                              where(out, t, rule),
                              rule.kind == Kind::requantize ? "FP4 weight" : "scaled weight", rows, cols,
                              src.name, st::shape_text(src.shape), slice_text(slice)));
    return false;
  }

  // A reshard cuts this output again (docs/reshard.md): on the block grid, as this plan's cuts are.
  static void cut_on_grid(PlannedTensor& t, std::uint64_t rows, std::uint64_t cols) {
    if (t.placement.kind != plan::Placement::Kind::split) return;
    t.placement.unit = std::lcm(t.placement.unit, t.placement.dim == 0 ? rows : cols);
  }

  void add(PlannedTensor& t, const rules::TransformRule& rule, std::size_t source, Slice slice,
           std::uint64_t block_rows, std::uint64_t block_cols) {
    plan_.companions.push_back(
        Companion{source, slice, block_rows, block_cols, rule.nan_bits, labels_(rule.rule)});
    t.companion = static_cast<std::uint32_t>(plan_.companions.size() - 1);
  }

  Plan& plan_;
  const st::Checkpoint& checkpoint_;
  RuleLabels& labels_;
  Diagnostics& problems_;
  const std::vector<const rules::TransformRule*>& rules_;
  std::unordered_map<std::string_view, const st::TensorRef*> inputs_;
  std::unordered_map<std::string, std::size_t> input_sources_;
  std::set<const rules::TransformRule*> bad_width_;
};

}  // namespace

std::uint32_t BlockPairs::pending(const rules::TransformRule& rule) {
  const auto it = std::find(rules_.begin(), rules_.end(), &rule);
  if (it != rules_.end()) return static_cast<std::uint32_t>(it - rules_.begin());
  rules_.push_back(&rule);
  return static_cast<std::uint32_t>(rules_.size() - 1);
}

void BlockPairs::resolve(Plan& plan, const st::Checkpoint& checkpoint, RuleLabels& labels,
                         Diagnostics& problems) const {
  if (rules_.empty()) return;
  Resolver resolver(plan, checkpoint, labels, problems, rules_);
  for (OutputFile& out : plan.outputs) resolver.rank(out);
}

}  // namespace shardwise::plan::detail
