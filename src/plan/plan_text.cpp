// The plan for people: a header, the placed tensors as an aligned table (one row per source
// tensor), the skipped tensors, a legend saying where each rule is written, then one line per
// output file. Deterministic, so golden files pin it.
//
// Column widths need every shown row first: rows are formatted twice (once measured, once written)
// rather than held, so a 200,000-row plan costs no memory beyond the output buffer.

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/parallel.hpp>
#include <shardwise/core/printable.hpp>
#include <shardwise/plan/planner.hpp>

#include <shardwise/plan/plan_view.hpp>
#include "plan/placer.hpp"

namespace shardwise::plan {
namespace {

using detail::append_shape;
using detail::append_uint;
using detail::Placement;

// Columns are numbered as they appear; a new column (e.g. a transform) is one more entry here and
// one more cell in format_row.
enum Column : std::size_t { kSource, kOutput, kIn, kRanks, kSlice, kOut, kBytes, kRule, kColumns };
constexpr std::array<const char*, kColumns> kHeadings = {"SOURCE", "OUTPUT", "IN",    "RANKS",
                                                         "SLICE",  "OUT",    "BYTES", "RULE"};
constexpr std::array<bool, kColumns> kRightAligned = {false, false, false, false, false, false, true, false};

// Characters as a terminal shows them: UTF-8 continuation bytes take no column.
std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(
      text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

void append_padded(std::string& out, std::string_view cell, std::size_t width, bool right_aligned) {
  const std::size_t shown = display_width(cell);
  const std::size_t padding = width > shown ? width - shown : 0;
  if (right_aligned) out.append(padding, ' ');
  out += cell;
  if (!right_aligned) out.append(padding, ' ');
}

bool is_ascii(std::string_view text) noexcept {
  std::uint64_t any = 0;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, text.data() + i, 8);
    any |= word;
  }
  for (; i < text.size(); ++i) any |= static_cast<unsigned char>(text[i]);
  return (any & 0x8080808080808080u) == 0;
}

// A placed tensor's row: its cells one after another in one buffer, reused from row to row (no
// string per cell), with where each cell ends and how wide it shows.
class Row {
 public:
  // What follows is cell `c` (cells come in column order, from an empty text()).
  void start(Column c) { bounds_[c] = text_.size(); }
  // Ends the last cell and measures them all.
  void finish();
  std::string& text() { return text_; }
  std::string_view cell(std::size_t c) const {
    return std::string_view(text_).substr(bounds_[c], bounds_[c + 1] - bounds_[c]);
  }
  const std::array<std::size_t, kColumns>& widths() const { return widths_; }

 private:
  std::string text_;
  std::array<std::size_t, kColumns + 1> bounds_{};
  std::array<std::size_t, kColumns> widths_{};
};

void Row::finish() {
  bounds_[kColumns] = text_.size();
  const bool ascii = is_ascii(text_);
  for (std::size_t c = 0; c < kColumns; ++c)
    widths_[c] = ascii ? bounds_[c + 1] - bounds_[c] : display_width(cell(c));
}

using Widths = std::array<std::size_t, kColumns>;

void widen(Widths& widths, const Row& row) {
  for (std::size_t c = 0; c < kColumns; ++c) widths[c] = std::max(widths[c], row.widths()[c]);
}

// As append_table_row: cells two spaces apart, padded to `widths`, the last one not padded.
void append_row(std::string& out, const Row& row, const Widths& widths) {
  std::array<std::size_t, kColumns> padding{};
  std::size_t size = 3;  // the indent and the newline
  for (std::size_t c = 0; c < kColumns; ++c) {
    const bool last = c + 1 == kColumns;
    if (!last || kRightAligned[c]) padding[c] = widths[c] > row.widths()[c] ? widths[c] - row.widths()[c] : 0;
    size += row.cell(c).size() + padding[c] + (last ? 0 : 2);
  }
  const std::size_t at = out.size();
  out.resize(at + size);
  char* p = out.data() + at;
  *p++ = ' ';
  *p++ = ' ';
  for (std::size_t c = 0; c < kColumns; ++c) {
    const std::string_view cell = row.cell(c);
    if (kRightAligned[c]) {
      std::memset(p, ' ', padding[c]);
      p += padding[c];
    }
    std::memcpy(p, cell.data(), cell.size());
    p += cell.size();
    if (!kRightAligned[c]) {
      std::memset(p, ' ', padding[c]);
      p += padding[c];
    }
    if (c + 1 < kColumns) {
      *p++ = ' ';
      *p++ = ' ';
    }
  }
  *p = '\n';
}

// Cells separated by two spaces; the last cell is not padded (no trailing spaces).
template <std::size_t N>
void append_table_row(std::string& out, const std::array<std::string, N>& cells,
                      const std::array<std::size_t, N>& widths, const std::array<bool, N>& right_aligned) {
  out += "  ";
  for (std::size_t c = 0; c < N; ++c) {
    if (c + 1 == N && !right_aligned[c]) {
      out += cells[c];
    } else {
      append_padded(out, cells[c], widths[c], right_aligned[c]);
      if (c + 1 < N) out += "  ";
    }
  }
  out += '\n';
}

template <std::size_t N>
void widen(std::array<std::size_t, N>& widths, const std::array<std::string, N>& cells) {
  for (std::size_t c = 0; c < N; ++c) widths[c] = std::max(widths[c], display_width(cells[c]));
}

void append_slice(std::string& out, const Slice& slice) {
  out += "dim";
  append_uint(out, static_cast<std::uint64_t>(slice.dim));
  out += '[';
  append_uint(out, slice.begin);
  out += ':';
  append_uint(out, slice.end);
  out += ']';
}

// Whether the placements are dim `dim` cut into equal consecutive pieces, one per rank in order.
bool even_split(std::span<const Placement> placements, std::uint64_t mp) {
  if (placements.size() != mp || mp < 2) return false;
  const Slice& first = placements.front().tensor->slice;
  const std::uint64_t size = first.end - first.begin;
  for (std::size_t i = 0; i < placements.size(); ++i) {
    const Slice& s = placements[i].tensor->slice;
    if (placements[i].rank != i || s.dim != first.dim || s.begin != i * size || s.end - s.begin != size)
      return false;
  }
  return true;
}

// "whole"; "dim1 8x512" (dim 1 cut in 8 pieces of 512, rank i taking the i-th); else every piece.
void append_slices(std::string& out, std::span<const Placement> placements, std::uint64_t mp) {
  if (std::all_of(placements.begin(), placements.end(),
                  [](const Placement& p) { return p.tensor->slice.whole(); })) {
    out += "whole";
  } else if (even_split(placements, mp)) {
    const Slice& first = placements.front().tensor->slice;
    out += "dim";
    append_uint(out, static_cast<std::uint64_t>(first.dim));
    out += ' ';
    append_uint(out, mp);
    out += 'x';
    append_uint(out, first.end - first.begin);
  } else {
    for (std::size_t i = 0; i < placements.size(); ++i) {
      if (i > 0) out += ' ';
      if (placements[i].tensor->slice.whole()) {
        out += "whole";
      } else {
        append_slice(out, placements[i].tensor->slice);
      }
    }
  }
}

void append_ranks(std::string& out, std::span<const Placement> placements, std::uint64_t mp) {
  if (placements.size() == mp && mp > 1) {
    out += "all";
    return;
  }
  if (placements.size() == 1) {  // as format_ranks has it
    append_uint(out, placements.front().rank);
    return;
  }
  std::vector<std::uint64_t> ranks;
  ranks.reserve(placements.size());
  for (const Placement& p : placements) ranks.push_back(p.rank);
  out += detail::format_ranks(ranks);
}

// The rule names the RULE columns show: the label without its location, unless two rules share a
// name (then the whole label, which tells them apart).
std::vector<std::string> rule_display_names(const Plan& plan) {
  std::unordered_map<std::string_view, std::size_t> uses;
  for (const std::string& label : plan.rule_labels) ++uses[detail::split_rule_label(label).name];
  std::vector<std::string> names;
  names.reserve(plan.rule_labels.size());
  for (const std::string& label : plan.rule_labels) {
    const std::string_view name = detail::split_rule_label(label).name;
    names.emplace_back(uses[name] == 1 ? name : std::string_view(label));
  }
  return names;
}

struct TextContext {
  const Plan& plan;
  const detail::RowSelection& rows;
  const detail::PlacementIndex& index;
  const std::vector<std::string>& rule_names;
};

// The placements of source `s` that the view shows (all of them when unfiltered).
std::span<const Placement> shown_placements(const TextContext& cx, std::size_t s,
                                            std::vector<Placement>& scratch) {
  const auto all = cx.index.of(s);
  if (!cx.rows.active()) return all;
  scratch.clear();
  for (const Placement& p : all) {
    if (cx.rows.shows(p.rank, *p.tensor, cx.plan.sources[s])) scratch.push_back(p);
  }
  return scratch;
}

// The same name: the source's own bytes, or equal ones (a renamed tensor's differ).
bool same_name(const Name& a, const Name& b) {
  return (a.data() == b.data() && a.size() == b.size()) || a.view() == b.view();
}

void format_row(Row& row, const TextContext& cx, const Source& src, std::span<const Placement> placements) {
  std::string& text = row.text();
  text.clear();
  const auto out = std::back_inserter(text);
  const PlannedTensor& first = *placements.front().tensor;
  row.start(kSource);
  append_printable(text, src.name);
  if (!src.within.whole()) fmt::format_to(out, "[{}:{}]", src.within.begin, src.within.end);
  row.start(kOutput);
  if (const PlannedTensor* fused = placements.front().fused) {
    // A part of a fused output: the output it goes into, and which part (by its own output name).
    const Composite& c = cx.plan.composites[fused->composite];
    append_printable(text, fused->name);
    fmt::format_to(out, " <- {}{} (part {} of {})", printable(first.name),
                   c.stacked ? fmt::format(" at {}", c.indices[placements.front().part / c.per_block]) : "",
                   placements.front().part % c.per_block + 1, c.per_block);
  } else if (same_name(first.name, src.name)) {
    text += '=';
  } else {
    append_printable(text, first.name);
  }
  row.start(kIn);
  text += st::dtype_name(src.dtype);
  append_shape(text, src.shape);
  row.start(kRanks);
  if (cx.plan.naming == OutputNaming::hf) {
    // No ranks: the file it goes to (a tensor goes to one).
    append_printable(text, cx.plan.outputs[placements.front().rank].file);
  } else {
    append_ranks(text, placements, cx.plan.model_parallel);
  }
  row.start(kSlice);
  append_slices(text, placements, cx.plan.model_parallel);
  row.start(kOut);
  text += st::dtype_name(first.dtype);
  append_shape(text, first.shape);
  row.start(kBytes);
  detail::append_grouped(text, first.bytes);
  row.start(kRule);
  text += cx.rule_names[first.rule];
  if (first.companion != kNoCompanion && first.companion < cx.plan.companions.size()) {
    // The transform and its companion (a consumed block scale has no row of its own).
    const Companion& c = cx.plan.companions[first.companion];
    if (first.cast == Cast::dequantize_packed) {
      // Every member it consumes, the codes first: none has a row of its own.
      std::vector<std::string> members;
      for (const std::size_t m : detail::packed_members(c, first.source))
        members.push_back(printable(cx.plan.sources[m].name));
      fmt::format_to(out, ", {} ({}) of {} ({})", cast_name(first.cast), detail::packing_text(c),
                     fmt::join(members, ", "), cx.rule_names[c.rule]);
    } else if (first.cast == Cast::dequantize) {
      fmt::format_to(out, ", {} with {}, {} ({})", cast_name(first.cast),
                     printable(cx.plan.sources[c.source].name), detail::scale_grid_text(c),
                     cx.rule_names[c.rule]);
    } else {
      fmt::format_to(out, ", {} with {} ({})", cast_name(first.cast),
                     printable(cx.plan.sources[c.source].name), cx.rule_names[c.rule]);
    }
  } else if (first.cast == Cast::requantize_fp4_scale) {
    fmt::format_to(out, ", {}", cast_name(first.cast));
  }
  if (const PlannedTensor* fused = placements.front().fused)
    fmt::format_to(out, ", {}", cx.rule_names[fused->rule]);
  if (first.permutation != kNoPermutation && first.permutation < cx.plan.permutations.size()) {
    const RowPermutation& p = cx.plan.permutations[first.permutation];
    const bool to_half = p.to == transform::RopeOrder::half_split;
    fmt::format_to(out, ", rows {} -> {} in {} heads ({})", to_half ? "interleaved" : "half_split",
                   to_half ? "half_split" : "interleaved", p.heads, cx.rule_names[p.rule]);
  }
  row.finish();
}

// The headings' row ("FILE" instead of "RANKS" for a plan in Hugging Face's layout).
void format_headings(Row& row, const Plan& plan) {
  row.text().clear();
  for (std::size_t c = 0; c < kColumns; ++c) {
    row.start(static_cast<Column>(c));
    row.text() += c == kRanks && plan.naming == OutputNaming::hf ? "FILE" : kHeadings[c];
  }
  row.finish();
}

void append_header(std::string& text, const Plan& plan, std::size_t input_tensors) {
  auto out = std::back_inserter(text);
  fmt::format_to(out, "plan: {} -> {}\n", printable(plan.input_root), outputs_heading(plan));
  fmt::format_to(out, "rules: {}\n", plan.rules_name);
  fmt::format_to(out, "params: {}\n", fmt::join(param_assignments(plan), " "));
  for (const std::string& line : param_source_lines(plan)) fmt::format_to(out, "  {}\n", line);
  for (const std::string& note : plan.notes) fmt::format_to(out, "note: {}\n", printable(note));
  fmt::format_to(out, "input: {} file{}, {} tensors, {} bytes ({})\n", plan.input_files.size(),
                 plan.input_files.size() == 1 ? "" : "s", input_tensors,
                 detail::group_digits(plan.input_bytes), detail::human_bytes(plan.input_bytes));
}

// The shown rows of sources [begin, end): how wide each column must be, which rules they name, how many.
struct Measured {
  Widths widths{};
  std::vector<bool> used;
  std::size_t shown = 0;
};

Measured measure_rows(const TextContext& cx, std::size_t begin, std::size_t end) {
  Measured m;
  m.used.assign(cx.plan.rule_labels.size(), false);
  Row row;
  std::vector<Placement> scratch;
  for (std::size_t s = begin; s < end; ++s) {
    const auto placements = shown_placements(cx, s, scratch);
    if (placements.empty()) continue;
    format_row(row, cx, cx.plan.sources[s], placements);
    widen(m.widths, row);
    m.used[placements.front().tensor->rule] = true;
    if (const PlannedTensor* fused = placements.front().fused) m.used[fused->rule] = true;
    ++m.shown;
  }
  return m;
}

// The rows of one piece of the table, written in order (about 300 KB of text).
constexpr std::size_t kRowsPerPiece = 2048;

// Every shown row measured: a large plan's rows in two halves on two threads (each row is formatted
// twice, and the measuring pass needs only the maxima).
Measured measure_all_rows(const TextContext& cx) {
  const std::size_t count = cx.plan.sources.size();
  if (detail::threads_for(count) == detail::Threads::one) return measure_rows(cx, 0, count);
  Measured m;
  Measured second;
  run_beside([&] { m = measure_rows(cx, 0, count / 2); },
             [&] { second = measure_rows(cx, count / 2, count); });
  for (std::size_t c = 0; c < kColumns; ++c) m.widths[c] = std::max(m.widths[c], second.widths[c]);
  for (std::size_t r = 0; r < m.used.size(); ++r) m.used[r] = m.used[r] || second.used[r];
  m.shown += second.shown;
  return m;
}

// Returns the rules the shown rows name, for the legend.
std::vector<bool> write_placed(detail::ChunkedText& out, const TextContext& cx,
                               const std::string& shown_note) {
  Measured measured = measure_all_rows(cx);
  Row headings;
  format_headings(headings, cx.plan);
  widen(measured.widths, headings);
  const Widths& widths = measured.widths;
  const std::size_t shown = measured.shown;
  fmt::format_to(std::back_inserter(out.text), "\nplaced: {} source tensors{}\n",
                 cx.plan.sources.size() - extra_chunk_sources(cx.plan),
                 cx.rows.active() ? fmt::format(", {} shown ({})", shown, shown_note) : "");
  if (shown == 0) return measured.used;
  append_row(out.text, headings, widths);
  out.finish();
  // The rows, a piece of sources at a time: a large plan's pieces on two threads, each thread
  // formatting into its own row.
  const std::size_t sources = cx.plan.sources.size();
  const std::size_t pieces = (sources + kRowsPerPiece - 1) / kRowsPerPiece;
  detail::format_in_order(
      pieces,
      [&cx, &widths, sources](std::size_t piece, std::string& text) {
        Row row;
        std::vector<Placement> scratch;
        for (std::size_t s = piece * kRowsPerPiece; s < std::min(sources, (piece + 1) * kRowsPerPiece); ++s) {
          const auto placements = shown_placements(cx, s, scratch);
          if (placements.empty()) continue;
          format_row(row, cx, cx.plan.sources[s], placements);
          append_row(text, row, widths);
        }
      },
      [&out](std::size_t, std::string& text) {
        if (!text.empty()) out.sink()(text);
      },
      detail::threads_for(sources));
  return measured.used;
}

void write_skipped(detail::ChunkedText& out, const TextContext& cx, const std::string& shown_note,
                   std::vector<bool>& used) {
  std::unordered_map<std::string_view, std::size_t> rule_of;
  for (std::size_t i = 0; i < cx.plan.rule_labels.size(); ++i) rule_of.emplace(cx.plan.rule_labels[i], i);
  using SkipCells = std::array<std::string, 4>;
  constexpr std::array<bool, 4> right_aligned{};
  std::array<std::size_t, 4> widths{};
  std::vector<SkipCells> rows;  // skips are few: kept
  rows.push_back({"SKIPPED", "FILE", "RULE", "REASON"});
  for (const Skipped& s : cx.plan.skipped) {
    if (!cx.rows.shows(s)) continue;
    const auto rule = rule_of.find(s.rule);
    std::string rule_name = s.rule;
    if (rule != rule_of.end()) {
      rule_name = cx.rule_names[rule->second];
      used[rule->second] = true;
    }
    rows.push_back({printable(s.name), printable(s.file), std::move(rule_name), printable(s.reason)});
  }
  for (const SkipCells& row : rows) widen(widths, row);
  fmt::format_to(std::back_inserter(out.text), "\nskipped: {} tensors{}\n", cx.plan.skipped.size(),
                 cx.rows.active() ? fmt::format(", {} shown ({})", rows.size() - 1, shown_note) : "");
  if (rows.size() == 1) return;
  for (const SkipCells& row : rows) {
    append_table_row(out.text, row, widths, right_aligned);
    out.flush_if_full();
  }
}

// Where each rule the rows name is written: once here, not on every row.
void write_legend(std::string& text, const TextContext& cx, const std::vector<bool>& used) {
  using LegendCells = std::array<std::string, 2>;
  std::vector<LegendCells> rows;
  rows.push_back({"RULE", "WRITTEN AT"});
  for (std::size_t i = 0; i < used.size(); ++i) {
    if (used[i])
      rows.push_back(
          {cx.rule_names[i], std::string(detail::split_rule_label(cx.plan.rule_labels[i]).location)});
  }
  if (rows.size() == 1) return;
  std::sort(rows.begin() + 1, rows.end());
  std::array<std::size_t, 2> widths{};
  for (const LegendCells& row : rows) widen(widths, row);
  fmt::format_to(std::back_inserter(text), "\nrules: {} named above\n", rows.size() - 1);
  for (const LegendCells& row : rows) append_table_row(text, row, widths, {false, false});
}

void append_rank_table(std::string& text, const Plan& plan) {
  auto out = std::back_inserter(text);
  std::size_t width = 4;
  for (const OutputFile& f : plan.outputs) width = std::max(width, printable(f.file).size());
  fmt::format_to(out, "{:>4}  {:<{}}  {:>9}  {:>17}  {:>10}\n", "rank", "file", width, "tensors", "bytes",
                 "size");
  std::uint64_t tensors = 0, bytes = 0;
  for (const OutputFile& f : plan.outputs) {
    fmt::format_to(out, "{:>4}  {:<{}}  {:>9}  {:>17}  {:>10}\n", f.rank, printable(f.file), width,
                   detail::group_digits(f.tensors.size()), detail::group_digits(f.bytes),
                   detail::human_bytes(f.bytes));
    tensors += f.tensors.size();
    bytes += f.bytes;
  }
  fmt::format_to(out, "{:>4}  {:<{}}  {:>9}  {:>17}  {:>10}\n", "all",
                 fmt::format("{} file{}", plan.outputs.size(), plan.outputs.size() == 1 ? "" : "s"), width,
                 detail::group_digits(tensors), detail::group_digits(bytes), detail::human_bytes(bytes));
  fmt::format_to(out, "replicated: {} bytes ({}) written more than once\n",
                 detail::group_digits(plan.replicated_bytes), detail::human_bytes(plan.replicated_bytes));
  fmt::format_to(out, "side files: {}\n", extra_files_text(plan));
}

}  // namespace

void write_plan_text(const Plan& plan, const PlanFilter& filter, const TextSink& sink) {
  const detail::RowSelection rows(plan, filter);
  const detail::PlacementIndex index(plan);
  const std::vector<std::string> rule_names = rule_display_names(plan);
  const TextContext cx{plan, rows, index, rule_names};
  const std::string shown_note = rows.describe(filter);

  detail::ChunkedText out(sink);
  append_header(out.text, plan, detail::input_tensor_count(plan, index));
  std::vector<bool> used = write_placed(out, cx, shown_note);
  write_skipped(out, cx, shown_note, used);
  write_legend(out.text, cx, used);
  out.text += '\n';
  append_rank_table(out.text, plan);
  out.finish();
}

std::string format_plan_text(const Plan& plan, const PlanFilter& filter) {
  return detail::collect([&](const TextSink& sink) { write_plan_text(plan, filter, sink); });
}

}  // namespace shardwise::plan
