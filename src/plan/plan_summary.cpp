// `plan --summary`: the plan at a glance, one line per deciding rule and per rank file, whatever the
// number of tensors. Deterministic, so golden files pin it.

#include <algorithm>
#include <array>
#include <iterator>
#include <map>
#include <set>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/printable.hpp>
#include <shardwise/plan/planner.hpp>

#include <shardwise/plan/plan_view.hpp>

namespace shardwise::plan {
namespace {

using detail::Placement;

// How one source tensor was placed, as the summary counts it.
std::string placement_kind(std::span<const Placement> placements, std::uint64_t mp) {
  const auto sliced = std::find_if(placements.begin(), placements.end(),
                                   [](const Placement& p) { return !p.tensor->slice.whole(); });
  if (sliced != placements.end()) return fmt::format("split dim{}", sliced->tensor->slice.dim);
  if (mp == 1) return "whole";
  if (placements.size() == mp) return "replicated";
  if (placements.size() == 1) return "owned";
  return fmt::format("copied to {} ranks", placements.size());
}

struct RuleRow {
  std::uint64_t tensors = 0;
  std::uint64_t bytes = 0;                     // written, all copies
  std::map<std::string, std::uint64_t> how;    // placement kind -> source tensors
  std::map<std::string, std::uint64_t> casts;  // "cast F16->BF16" -> source tensors
};

struct RankRow {
  std::uint64_t replicated = 0;  // bytes of tensors also written whole to other ranks
};

template <std::size_t N>
void append_rows(std::string& out, const std::vector<std::array<std::string, N>>& rows,
                 const std::array<bool, N>& right_aligned) {
  std::array<std::size_t, N> widths{};
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < N; ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line = "  ";
    for (std::size_t c = 0; c < N; ++c) {
      const std::size_t pad = widths[c] - row[c].size();
      if (right_aligned[c]) line.append(pad, ' ');
      line += row[c];
      if (!right_aligned[c] && c + 1 < N) line.append(pad, ' ');
      if (c + 1 < N) line += "  ";
    }
    while (line.ends_with(' ')) line.pop_back();
    out += line;
    out += '\n';
  }
}

// "split dim1 (12), cast F16->BF16 (4)": how the tensors were placed, then how converted.
std::string how_text(const RuleRow& row) {
  std::vector<std::string> parts;
  for (const auto& [kind, count] : row.how) parts.push_back(fmt::format("{} ({})", kind, count));
  for (const auto& [kind, count] : row.casts) parts.push_back(fmt::format("{} ({})", kind, count));
  return fmt::format("{}", fmt::join(parts, ", "));
}

// Sources a transform read by input name (`lookup: input`) although the rules placed or skipped
// that tensor already: the same input tensor a second time, not one more.
std::set<std::size_t> reread_sources(const Plan& plan, const detail::PlacementIndex& index) {
  std::set<std::string_view> seen;
  for (const Skipped& s : plan.skipped) seen.insert(s.name);
  for (std::size_t s = 0; s < plan.sources.size(); ++s) {
    if (!index.of(s).empty()) seen.insert(plan.sources[s].name);
  }
  std::set<std::size_t> reread;
  for (std::size_t s = 0; s < plan.sources.size(); ++s) {
    if (index.of(s).empty() && seen.count(plan.sources[s].name) != 0) reread.insert(s);
  }
  return reread;
}

// The transform rule that consumed each source a dequantization read and nothing wrote (the
// weight's block scale), by source index.
std::map<std::size_t, std::size_t> consumed_by(const Plan& plan, const detail::PlacementIndex& index) {
  const std::set<std::size_t> reread = reread_sources(plan, index);
  std::map<std::size_t, std::size_t> consumed;
  for (const OutputFile& f : plan.outputs) {
    for (const PlannedTensor& t : f.tensors) {
      if ((t.cast != Cast::dequantize && t.cast != Cast::dequantize_packed) ||
          t.companion >= plan.companions.size())
        continue;
      const Companion& c = plan.companions[t.companion];
      for (const std::size_t source : {c.source, c.zeros, c.group_index}) {
        if (source < plan.sources.size() && index.of(source).empty() && reread.count(source) == 0) {
          consumed.emplace(source, c.rule);
        }
      }
    }
  }
  return consumed;
}

void append_rules(std::string& out, const Plan& plan, const detail::PlacementIndex& index) {
  std::vector<RuleRow> by_rule(plan.rule_labels.size());
  // Consumed sources count in their transform's row, so that the rows add up to the input's tensors.
  for (const auto& [source, rule] : consumed_by(plan, index)) {
    if (rule >= by_rule.size()) continue;
    ++by_rule[rule].tensors;
    ++by_rule[rule].how["consumed"];
  }
  for (std::size_t s = 0; s < plan.sources.size(); ++s) {
    const auto placements = index.of(s);
    if (placements.empty()) continue;
    const PlannedTensor& first = *placements.front().tensor;
    RuleRow& row = by_rule[first.rule];
    ++row.tensors;
    for (const Placement& p : placements) row.bytes += p.tensor->bytes;
    ++row.how[placement_kind(placements, plan.model_parallel)];
    if (first.cast != Cast::none) {
      const bool block = first.companion != kNoCompanion || first.cast == Cast::requantize_fp4_scale;
      ++row.casts[fmt::format("{} {}->{}",
                              block                             ? cast_name(first.cast)
                              : first.cast == Cast::reinterpret ? "reinterpret"
                                                                : "cast",
                              detail::cast_source_dtype(plan.sources[s], first),
                              detail::cast_target_dtype(first))];
    }
    if (first.permutation != kNoPermutation && first.permutation < plan.permutations.size()) {
      const RowPermutation& p = plan.permutations[first.permutation];
      ++row.casts[fmt::format(
          "rows {} in {} heads",
          p.to == transform::RopeOrder::half_split ? "interleaved->half_split" : "half_split->interleaved",
          p.heads)];
    }
  }
  for (const Skipped& s : plan.skipped) {
    const auto it = std::find(plan.rule_labels.begin(), plan.rule_labels.end(), s.rule);
    if (it == plan.rule_labels.end()) continue;
    RuleRow& row = by_rule[static_cast<std::size_t>(it - plan.rule_labels.begin())];
    ++row.tensors;
    ++row.how["skipped"];
  }
  std::vector<std::array<std::string, 5>> rows;
  for (std::size_t r = 0; r < by_rule.size(); ++r) {
    if (by_rule[r].tensors == 0) continue;
    const auto parts = detail::split_rule_label(plan.rule_labels[r]);
    rows.push_back({std::string(parts.name), detail::group_digits(by_rule[r].tensors),
                    detail::human_bytes(by_rule[r].bytes), how_text(by_rule[r]),
                    std::string(parts.location)});
  }
  std::sort(rows.begin(), rows.end());
  fmt::format_to(std::back_inserter(out), "\nrules: {} decided the {} input tensors\n", rows.size(),
                 detail::input_tensor_count(plan));
  rows.insert(rows.begin(), {"RULE", "TENSORS", "WRITTEN", "HOW (SOURCE TENSORS)", "WRITTEN AT"});
  append_rows(out, rows, {false, true, true, false, false});
}

std::vector<RankRow> replicated_by_rank(const Plan& plan, const detail::PlacementIndex& index) {
  std::vector<RankRow> ranks(plan.outputs.size());
  for (std::size_t s = 0; s < plan.sources.size(); ++s) {
    const auto placements = index.of(s);
    if (placements.size() < 2) continue;
    if (!std::all_of(placements.begin(), placements.end(),
                     [](const Placement& p) { return p.tensor->slice.whole(); }))
      continue;
    for (const Placement& p : placements) ranks[p.rank].replicated += p.tensor->bytes;
  }
  return ranks;
}

void append_ranks(std::string& out, const Plan& plan, const detail::PlacementIndex& index) {
  constexpr std::uint64_t kBar = 30;
  const std::vector<RankRow> extra = replicated_by_rank(plan, index);
  std::uint64_t most = 0, least = UINT64_MAX;
  std::size_t most_rank = 0, least_rank = 0;
  for (std::size_t r = 0; r < plan.outputs.size(); ++r) {
    const std::uint64_t bytes = plan.outputs[r].bytes;
    if (bytes > most) most = bytes, most_rank = r;
    if (bytes < least) least = bytes, least_rank = r;
  }
  std::vector<std::array<std::string, 6>> rows;
  rows.push_back({"RANK", "FILE", "TENSORS", "BYTES", "REPLICATED", "BALANCE"});
  for (std::size_t r = 0; r < plan.outputs.size(); ++r) {
    const OutputFile& f = plan.outputs[r];
    const std::uint64_t bar = most == 0 ? 0 : (f.bytes * kBar + most / 2) / most;
    rows.push_back({fmt::format("{}", f.rank), printable(f.file), detail::group_digits(f.tensors.size()),
                    detail::human_bytes(f.bytes), detail::human_bytes(extra[r].replicated),
                    std::string(static_cast<std::size_t>(bar), '#')});
  }
  fmt::format_to(std::back_inserter(out), "\nrank files: {}\n", plan.outputs.size());
  append_rows(out, rows, {true, false, true, true, true, false});
  if (plan.outputs.size() < 2) return;
  if (most == least) {
    fmt::format_to(std::back_inserter(out), "balance: max/min 1.00 (every rank {})\n",
                   detail::human_bytes(most));
  } else if (least == 0) {
    fmt::format_to(std::back_inserter(out), "balance: rank {} receives nothing (largest: rank {}, {})\n",
                   least_rank, most_rank, detail::human_bytes(most));
  } else {
    fmt::format_to(std::back_inserter(out),
                   "balance: max/min {:.2f} (largest: rank {}, {}; smallest: rank {}, {})\n",
                   static_cast<double>(most) / static_cast<double>(least), most_rank,
                   detail::human_bytes(most), least_rank, detail::human_bytes(least));
  }
}

// Fused outputs (rules `fuse:`) by rule: how many, of how many parts (each part is counted above
// under the rule that cut it).
void append_fused(std::string& out, const Plan& plan) {
  if (plan.composites.empty()) return;
  struct Row {
    std::uint64_t outputs = 0, parts = 0, bytes = 0;
    bool stacked = false;
  };
  std::map<std::size_t, Row> by_rule;
  for (const OutputFile& f : plan.outputs) {
    for (const PlannedTensor& t : f.tensors) {
      if (t.composite >= plan.composites.size()) continue;
      const Composite& c = plan.composites[t.composite];
      Row& row = by_rule[c.rule];
      ++row.outputs;
      row.parts += c.parts.size();
      row.bytes += t.bytes;
      row.stacked = row.stacked || c.stacked;
    }
  }
  std::vector<std::array<std::string, 5>> rows;
  rows.push_back({"RULE", "OUTPUTS", "PARTS", "WRITTEN", "HOW"});
  std::uint64_t outputs = 0;
  for (const auto& [rule, row] : by_rule) {
    outputs += row.outputs;
    rows.push_back(
        {std::string(detail::split_rule_label(plan.rule_labels[rule]).name),
         detail::group_digits(row.outputs), detail::group_digits(row.parts), detail::human_bytes(row.bytes),
         row.stacked ? "stacked, each part cut for its rank" : "concatenated, each part cut for its rank"});
  }
  fmt::format_to(std::back_inserter(out), "\nfused: {} outputs over the ranks\n", outputs);
  append_rows(out, rows, {false, true, true, true, false});
}

void append_skips(std::string& out, const Plan& plan) {
  std::map<std::pair<std::string_view, std::string_view>, std::uint64_t> by_reason;  // (rule, reason)
  for (const Skipped& s : plan.skipped) ++by_reason[{detail::split_rule_label(s.rule).name, s.reason}];
  fmt::format_to(std::back_inserter(out), "\nskipped: {} tensors\n", plan.skipped.size());
  if (by_reason.empty()) return;
  std::vector<std::array<std::string, 3>> rows;
  rows.push_back({"RULE", "TENSORS", "REASON"});
  for (const auto& [key, count] : by_reason) {
    rows.push_back({std::string(key.first), detail::group_digits(count), printable(key.second)});
  }
  append_rows(out, rows, {false, true, false});
}

}  // namespace

std::string format_plan_summary(const Plan& plan) {
  const detail::PlacementIndex index(plan);
  std::string out;
  std::uint64_t tensors = 0, bytes = 0;
  for (const OutputFile& f : plan.outputs) {
    tensors += f.tensors.size();
    bytes += f.bytes;
  }
  auto it = std::back_inserter(out);
  fmt::format_to(it, "plan: {} -> {}\n", printable(plan.input_root), outputs_heading(plan));
  fmt::format_to(it, "rules: {}\n", plan.rules_name);
  fmt::format_to(it, "params: {}\n", fmt::join(param_assignments(plan), " "));
  for (const std::string& line : param_source_lines(plan)) fmt::format_to(it, "  {}\n", line);
  fmt::format_to(it, "input: {} file{}, {} tensors, {}\n", plan.input_files.size(),
                 plan.input_files.size() == 1 ? "" : "s", detail::input_tensor_count(plan),
                 detail::human_bytes(plan.input_bytes));
  fmt::format_to(it, "output: {} tensors, {} ({} written more than once)\n", detail::group_digits(tensors),
                 detail::human_bytes(bytes), detail::human_bytes(plan.replicated_bytes));
  append_rules(out, plan, index);
  append_fused(out, plan);
  append_ranks(out, plan, index);
  append_skips(out, plan);
  fmt::format_to(it, "\nside files: {}\n", extra_files_text(plan));
  return out;
}

}  // namespace shardwise::plan
