// The plan for people: a header, one row per source tensor with its placements, the skipped
// tensors, then a per-rank summary that fits 80 columns. Deterministic, so golden files pin it.

#include <algorithm>
#include <iterator>

#include <fmt/format.h>

#include <shardwise/plan/planner.hpp>

#include "plan/placer.hpp"
#include "plan/plan_view.hpp"

namespace shardwise::plan {
namespace {

using detail::Placement;

using detail::append_shape;
using detail::append_uint;

void append_slice(std::string& out, const Slice& slice) {
  if (slice.whole()) {
    out += "whole";
    return;
  }
  out += "dim";
  append_uint(out, static_cast<std::uint64_t>(slice.dim));
  out += '[';
  append_uint(out, slice.begin);
  out += ':';
  append_uint(out, slice.end);
  out += ']';
}

// "all", "rank 3" or "ranks 0-7", then the slice each rank takes.
void append_placement(std::string& out, std::span<const Placement> placements, std::uint64_t mp) {
  const bool whole = std::all_of(placements.begin(), placements.end(),
                                 [](const Placement& p) { return p.tensor->slice.whole(); });
  if (whole && placements.size() == mp) {
    out += "all";
  } else if (placements.size() == 1) {
    out += "rank ";
    append_uint(out, placements.front().rank);
  } else {
    std::vector<std::uint64_t> ranks;
    for (const Placement& p : placements) ranks.push_back(p.rank);
    out += "ranks ";
    out += detail::format_ranks(ranks);
  }
  if (whole) {
    out += "  whole";
    return;
  }
  out += ' ';
  for (const Placement& p : placements) {
    out += ' ';
    append_slice(out, p.tensor->slice);
  }
}

// SOURCE [-> OUTPUT]  DTYPE[SHAPE]  RANKS  SLICE PER RANK  [CAST]  WRITTEN  BYTES  RULE
void append_row(std::string& out, const Plan& plan, const Source& src, std::span<const Placement> placements) {
  out += "  ";
  out += src.name;
  if (placements.empty()) {
    out += "  not placed\n";
    return;
  }
  const PlannedTensor& first = *placements.front().tensor;
  if (first.name != src.name) {
    out += " -> ";
    out += first.name;
  }
  out += "  ";
  out += st::dtype_name(src.dtype);
  append_shape(out, src.shape);
  out += "  ";
  append_placement(out, placements, plan.model_parallel);
  out += "  ";
  if (first.cast != Cast::none) {
    out += detail::cast_source_dtype(first.cast);
    out += "->";
    out += detail::cast_target_dtype(first.cast);
    out += "  ";
  }
  out += st::dtype_name(first.dtype);
  append_shape(out, first.shape);
  out += "  ";
  append_uint(out, first.bytes);
  out += placements.size() > 1 ? " B each  " : " B  ";
  out += plan.rule_labels[first.rule];
  out += '\n';
}

void append_header(std::string& text, const Plan& plan, std::size_t input_tensors) {
  auto out = std::back_inserter(text);
  std::vector<std::string> params;
  for (const auto& [name, value] : plan.params) params.push_back(fmt::format("{}={}", name, value));
  fmt::format_to(out, "plan: {} -> {} ranks (mp={})\n", plan.input_root, plan.model_parallel, plan.model_parallel);
  fmt::format_to(out, "rules: {}\n", plan.rules_name);
  fmt::format_to(out, "params: {}\n", fmt::join(params, " "));
  for (const std::string& note : plan.notes) fmt::format_to(out, "note: {}\n", note);
  fmt::format_to(out, "input: {} file{}, {} tensors, {} bytes ({})\n", plan.input_files.size(),
                 plan.input_files.size() == 1 ? "" : "s", input_tensors, detail::group_digits(plan.input_bytes),
                 detail::human_bytes(plan.input_bytes));
}

void append_summary(std::string& text, const Plan& plan) {
  auto out = std::back_inserter(text);
  std::size_t width = 4;
  for (const OutputFile& f : plan.outputs) width = std::max(width, f.file.size());
  fmt::format_to(out, "{:>4}  {:<{}}  {:>9}  {:>17}  {:>10}\n", "rank", "file", width, "tensors", "bytes", "size");
  std::uint64_t tensors = 0, bytes = 0;
  for (const OutputFile& f : plan.outputs) {
    fmt::format_to(out, "{:>4}  {:<{}}  {:>9}  {:>17}  {:>10}\n", f.rank, f.file, width,
                   detail::group_digits(f.tensors.size()), detail::group_digits(f.bytes), detail::human_bytes(f.bytes));
    tensors += f.tensors.size();
    bytes += f.bytes;
  }
  fmt::format_to(out, "{:>4}  {:<{}}  {:>9}  {:>17}  {:>10}\n", "all",
                 fmt::format("{} file{}", plan.outputs.size(), plan.outputs.size() == 1 ? "" : "s"), width,
                 detail::group_digits(tensors), detail::group_digits(bytes), detail::human_bytes(bytes));
  fmt::format_to(out, "replicated: {} bytes ({}) written more than once\n",
                 detail::group_digits(plan.replicated_bytes), detail::human_bytes(plan.replicated_bytes));
  fmt::format_to(out, "side files: {}\n", plan.side_files.empty() ? "none" : fmt::format("{}", fmt::join(plan.side_files, ", ")));
}

}  // namespace

void write_plan_text(const Plan& plan, const std::optional<std::string>& filter, const TextSink& sink) {
  const detail::RowFilter rows(filter);
  const detail::PlacementIndex index(plan);
  detail::ChunkedText out(sink);
  append_header(out.text, plan, plan.sources.size() + plan.skipped.size());

  // The rows matching --filter are picked first, so that the count line can precede them.
  std::vector<std::size_t> placed_rows;
  for (std::size_t s = 0; s < plan.sources.size(); ++s) {
    const auto placements = index.of(s);
    const Source& src = plan.sources[s];
    if (rows.matches(src.name, placements.empty() ? src.name : placements.front().tensor->name)) placed_rows.push_back(s);
  }
  fmt::format_to(std::back_inserter(out.text),
                 "\nplaced: {} source tensors{} (SOURCE [-> OUTPUT]  DTYPE[SHAPE]  RANKS  SLICE PER RANK  "
                 "[CAST]  WRITTEN  BYTES  RULE)\n",
                 plan.sources.size(),
                 rows.active() ? fmt::format(", {} shown matching --filter {}", placed_rows.size(), *filter) : "");
  for (const std::size_t s : placed_rows) {
    append_row(out.text, plan, plan.sources[s], index.of(s));
    out.flush_if_full();
  }

  std::vector<const Skipped*> skipped_rows;
  for (const Skipped& s : plan.skipped) {
    if (rows.matches(s.name)) skipped_rows.push_back(&s);
  }
  fmt::format_to(std::back_inserter(out.text), "\nskipped: {} tensors{}\n", plan.skipped.size(),
                 rows.active() ? fmt::format(", {} shown", skipped_rows.size()) : "");
  for (const Skipped* s : skipped_rows) {
    fmt::format_to(std::back_inserter(out.text), "  {} ({})  skipped by {}: {}\n", s->name, s->file, s->rule,
                   s->reason);
    out.flush_if_full();
  }
  out.text += '\n';
  append_summary(out.text, plan);
  out.finish();
}

std::string format_plan_text(const Plan& plan, const std::optional<std::string>& filter) {
  return detail::collect([&](const TextSink& sink) { write_plan_text(plan, filter, sink); });
}

}  // namespace shardwise::plan
