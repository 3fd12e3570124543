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

std::string slice_text(const Slice& slice) {
  return slice.whole() ? std::string("whole") : fmt::format("dim{}[{}:{}]", slice.dim, slice.begin, slice.end);
}

// "all", "rank 3" or "ranks 0-7", then the slice each rank takes.
std::string placement_text(std::span<const Placement> placements, std::uint64_t mp) {
  const bool whole = std::all_of(placements.begin(), placements.end(),
                                 [](const Placement& p) { return p.tensor->slice.whole(); });
  std::string where;
  if (whole && placements.size() == mp) {
    where = "all";
  } else if (placements.size() == 1) {
    where = fmt::format("rank {}", placements.front().rank);
  } else {
    std::vector<std::uint64_t> ranks;
    for (const Placement& p : placements) ranks.push_back(p.rank);
    where = fmt::format("ranks {}", detail::format_ranks(ranks));
  }
  if (whole) return where + "  whole";
  for (const Placement& p : placements) where += ' ' + slice_text(p.tensor->slice);
  return where;
}

void append_row(std::string& text, const Plan& plan, const Source& src, std::span<const Placement> placements) {
  auto out = std::back_inserter(text);
  fmt::format_to(out, "  {}", src.name);
  if (placements.empty()) {
    fmt::format_to(out, "  {}{}  not placed\n", st::dtype_name(src.dtype), detail::shape_text(src.shape));
    return;
  }
  const PlannedTensor& first = *placements.front().tensor;
  if (first.name != src.name) fmt::format_to(out, " -> {}", first.name);
  fmt::format_to(out, "  {}{}  {}  ", st::dtype_name(src.dtype), detail::shape_text(src.shape),
                 placement_text(placements, plan.model_parallel));
  if (first.cast != Cast::none) {
    fmt::format_to(out, "{}->{}  ", detail::cast_source_dtype(first.cast), detail::cast_target_dtype(first.cast));
  }
  fmt::format_to(out, "{}{}  {} B{}  {}\n", st::dtype_name(first.dtype), detail::shape_text(first.shape),
                 first.bytes, placements.size() > 1 ? " each" : "", first.rule);
}

void append_header(std::string& text, const Plan& plan, std::size_t input_tensors) {
  auto out = std::back_inserter(text);
  std::vector<std::string> params;
  for (const auto& [name, value] : plan.params) params.push_back(fmt::format("{}={}", name, value));
  fmt::format_to(out, "plan: {} -> {} ranks (mp={})\n", plan.input_root, plan.model_parallel, plan.model_parallel);
  fmt::format_to(out, "rules: {}\n", plan.rules_name);
  fmt::format_to(out, "params: {}\n", fmt::join(params, " "));
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

std::string format_plan_text(const Plan& plan, const std::optional<std::string>& filter) {
  const detail::RowFilter rows(filter);
  const detail::PlacementIndex index(plan);
  std::string text;
  text.reserve(256 + plan.sources.size() * 160);
  append_header(text, plan, plan.sources.size() + plan.skipped.size());

  std::string body;
  body.reserve(plan.sources.size() * 150);
  std::size_t shown = 0;
  for (std::size_t s = 0; s < plan.sources.size(); ++s) {
    const auto placements = index.of(s);
    const Source& src = plan.sources[s];
    if (!rows.matches(src.name, placements.empty() ? src.name : placements.front().tensor->name)) continue;
    append_row(body, plan, src, placements);
    ++shown;
  }
  auto out = std::back_inserter(text);
  fmt::format_to(out, "\nplaced: {} source tensors{} (SOURCE [-> OUTPUT]  DTYPE[SHAPE]  RANKS  SLICE PER RANK  "
                      "[CAST]  WRITTEN  BYTES  RULE)\n",
                 plan.sources.size(), rows.active() ? fmt::format(", {} shown matching --filter {}", shown, *filter) : "");
  text += body;

  body.clear();
  shown = 0;
  for (const Skipped& s : plan.skipped) {
    if (!rows.matches(s.name)) continue;
    fmt::format_to(std::back_inserter(body), "  {} ({})  skipped by {}: {}\n", s.name, s.file, s.rule, s.reason);
    ++shown;
  }
  fmt::format_to(out, "\nskipped: {} tensors{}\n", plan.skipped.size(),
                 rows.active() ? fmt::format(", {} shown", shown) : "");
  text += body;
  text += '\n';
  append_summary(text, plan);
  return text;
}

}  // namespace shardwise::plan
