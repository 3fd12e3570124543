// `reshard --dry-run`: the plan as text or JSON, each new tensor with the old pieces it is made of.
#include <shardwise/reshard/reshard.hpp>

#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/core/printable.hpp>

#include <shardwise/plan/plan_view.hpp>

namespace shardwise::reshard {

namespace {

using Kind = plan::Placement::Kind;

// The old pieces a new tensor reads: (old file index, begin, end) in order; a whole tensor: one.
struct Use {
  std::size_t file;
  std::uint64_t begin;
  std::uint64_t end;
};

std::vector<Use> uses(const ReshardPlan& plan, const NewTensor& t) {
  const LogicalTensor& logical = plan.logical[t.logical];
  std::vector<Use> result;
  if (logical.placement.kind != Kind::split) {
    result.push_back({logical.pieces.front().file, 0, 0});
    return result;
  }
  for (const Piece& p : logical.pieces) {
    const std::uint64_t begin = std::max(p.begin, t.begin);
    const std::uint64_t end = std::min(p.end, t.end);
    if (begin < end) result.push_back({p.file, begin - p.begin, end - p.begin});
  }
  return result;
}

std::string how(const LogicalTensor& t) {
  switch (t.placement.kind) {
    case Kind::split:
      return fmt::format("split dim {}", t.placement.dim);
    case Kind::owned:
      return fmt::format("owned {}/{}", t.placement.index, t.placement.count);
    case Kind::composite:
      return "fused";
    case Kind::replicated:
      break;
  }
  return "replicated";
}

// What --rule selects in a reshard plan: the cut ("split dim 1", "owned", "replicated"), since
// the rules that decided each tensor are not recorded in the folder.
std::string cut_group(const LogicalTensor& t) {
  switch (t.placement.kind) {
    case Kind::split:
      return fmt::format("split dim {}", t.placement.dim);
    case Kind::owned:
      return "owned";
    case Kind::composite:
      return "fused";
    case Kind::replicated:
      break;
  }
  return "replicated";
}

// The --rank, --rule and --filter of `plan`'s views, checked against the reshard plan (a rank
// beyond the new mp, a cut no tensor has: Error(usage) naming what exists).
class Selection {
 public:
  Selection(const ReshardPlan& plan, const plan::PlanFilter& filter)
      : plan_(plan), filter_(filter), names_(filter.pattern) {
    if (filter.rank && *filter.rank >= plan.model_parallel) {
      throw Error(ErrorKind::usage, fmt::format("--rank {}: the reshard writes ranks 0 to {} (mp={})",
                                                *filter.rank, plan.model_parallel - 1, plan.model_parallel));
    }
    if (filter.rule) {
      std::set<std::string> groups;
      for (const LogicalTensor& t : plan.logical) groups.insert(cut_group(t));
      if (groups.count(*filter.rule) == 0) {
        throw Error(ErrorKind::usage,
                    fmt::format("--rule '{}': a reshard selects by cut, and its tensors are cut as: {}",
                                *filter.rule, fmt::join(groups, ", ")));
      }
    }
  }
  bool shows(const NewFile& file) const { return !filter_.rank || *filter_.rank == file.rank; }
  bool shows(const NewTensor& t) const {
    const LogicalTensor& logical = plan_.logical[t.logical];
    return (!filter_.rule || *filter_.rule == cut_group(logical)) && names_.matches(logical.name);
  }

 private:
  const ReshardPlan& plan_;
  const plan::PlanFilter& filter_;
  plan::detail::RowFilter names_;
};

std::string filter_text(const plan::PlanFilter& filter) {
  std::vector<std::string> parts;
  if (filter.rank) parts.push_back(fmt::format("--rank {}", *filter.rank));
  if (filter.rule) parts.push_back(fmt::format("--rule '{}'", *filter.rule));
  if (filter.pattern) parts.push_back(fmt::format("--filter '{}'", *filter.pattern));
  return fmt::format("{}", fmt::join(parts, " "));
}

}  // namespace

std::string format_reshard_text(const ReshardPlan& plan, const plan::PlanFilter& filter) {
  std::string text;
  format_reshard_text(plan, filter, [&](std::string_view part) { text += part; });
  return text;
}

void format_reshard_text(const ReshardPlan& plan, const plan::PlanFilter& filter,
                         const std::function<void(std::string_view)>& sink) {
  const Selection selection(plan, filter);
  // Handed on in parts of about kPartBytes (a plan at a large model's tensor count is 10s of MB).
  constexpr std::size_t kPartBytes = 64 << 10;
  std::string text =
      fmt::format("reshard {} (mp={}) -> mp={}: {} files, {} logical tensors, {} tensor bytes\n", plan.from,
                  plan.from_model_parallel, plan.model_parallel, plan.outputs.size(), plan.logical.size(),
                  plan.output_bytes);
  std::size_t shown = 0;
  std::size_t total = 0;
  for (const NewFile& f : plan.outputs) {
    total += f.tensors.size();
    if (!selection.shows(f)) continue;
    text += fmt::format("{} (rank {}, {} tensors, {} bytes)\n", f.file, f.rank, f.tensors.size(), f.bytes);
    for (const NewTensor& t : f.tensors) {
      if (!selection.shows(t)) continue;
      ++shown;
      const LogicalTensor& logical = plan.logical[t.logical];
      std::vector<std::string> from;
      for (const Use& u : uses(plan, t)) {
        const std::string& name = plan.old_files[u.file].file;
        from.push_back(logical.placement.kind == Kind::split ? fmt::format("{}[{}:{}]", name, u.begin, u.end)
                                                             : name);
      }
      text += fmt::format("  {} {}[{}] {} <- {}\n", printable(logical.name), st::dtype_name(logical.dtype),
                          fmt::join(shape_of(plan, t), ", "), how(logical), fmt::join(from, " + "));
      if (text.size() >= kPartBytes) {
        sink(text);
        text.clear();
      }
    }
  }
  if (filter.active()) {
    text += fmt::format("shown: {} of {} new tensors ({})\n", shown, total, filter_text(filter));
  } else if (!plan.side_files.empty()) {
    text += fmt::format("side files: {}\n", printable(fmt::format("{}", fmt::join(plan.side_files, ", "))));
  }
  sink(text);
}

std::string format_reshard_json(const ReshardPlan& plan, const plan::PlanFilter& filter) {
  std::string text;
  format_reshard_json(plan, filter, [&](std::string_view part) { text += part; });
  return text;
}

namespace {

// `json` as nlohmann's dump(1) writes it nested `depth` levels deep (its lines after the first
// indented by as many spaces; a string's newlines are escaped, so every '\n' is a line's).
std::string nested_dump(const nlohmann::ordered_json& json, std::size_t depth) {
  std::string text = json.dump(1);
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    out += c;
    if (c == '\n') out.append(depth, ' ');
  }
  return out;
}

}  // namespace

// The document as nlohmann's dump(1) of it, made a tensor at a time: at a large model's tensor count
// the whole document as JSON objects took 100s of MB.
void format_reshard_json(const ReshardPlan& plan, const plan::PlanFilter& filter,
                         const std::function<void(std::string_view)>& sink) {
  using Json = nlohmann::ordered_json;
  const Selection selection(plan, filter);
  constexpr std::size_t kPartBytes = 64 << 10;
  std::string text = fmt::format(
      "{{\n \"from\": {},\n \"from_model_parallel\": {},\n \"model_parallel\": {},\n "
      "\"outputs\": [",
      Json(plan.from).dump(), plan.from_model_parallel, plan.model_parallel);
  bool any_file = false;
  for (const NewFile& f : plan.outputs) {
    if (!selection.shows(f)) continue;
    text += fmt::format("{}\n  {{\n   \"rank\": {},\n   \"file\": {},\n   \"bytes\": {},\n   \"tensors\": [",
                        any_file ? "," : "", f.rank, Json(f.file).dump(), f.bytes);
    any_file = true;
    bool any_tensor = false;
    for (const NewTensor& t : f.tensors) {
      if (!selection.shows(t)) continue;
      const LogicalTensor& logical = plan.logical[t.logical];
      Json tensor = {{"name", logical.name.str()},
                     {"dtype", std::string(st::dtype_name(logical.dtype))},
                     {"shape", shape_of(plan, t)},
                     {"cut", how(logical)},
                     {"pieces", Json::array()}};
      for (const Use& u : uses(plan, t)) {
        Json piece = {{"file", plan.old_files[u.file].file}};
        if (logical.placement.kind == Kind::split) {
          piece["dim"] = logical.placement.dim;
          piece["begin"] = u.begin;
          piece["end"] = u.end;
        }
        tensor["pieces"].push_back(std::move(piece));
      }
      text += any_tensor ? ",\n    " : "\n    ";
      any_tensor = true;
      text += nested_dump(tensor, 4);
      if (text.size() >= kPartBytes) {
        sink(text);
        text.clear();
      }
    }
    text += any_tensor ? "\n   ]\n  }" : "]\n  }";
  }
  text += any_file ? "\n ],\n \"side_files\": " : "],\n \"side_files\": ";
  text += nested_dump(Json(plan.side_files), 1);
  text += "\n}\n";
  sink(text);
}

std::string format_reshard_summary(const ReshardPlan& plan) {
  std::string text = fmt::format("reshard {} (mp={}) -> mp={}: {} logical tensors, {} of tensor data\n",
                                 plan.from, plan.from_model_parallel, plan.model_parallel,
                                 plan.logical.size(), plan::detail::human_bytes(plan.output_bytes));
  struct Count {
    std::size_t logical = 0;
    std::uint64_t bytes = 0;  // logical bytes
  };
  std::map<std::string, Count> by_cut;
  std::vector<std::uint64_t> logical_bytes(plan.logical.size(), 0);
  for (const NewFile& f : plan.outputs) {
    for (const NewTensor& t : f.tensors) logical_bytes[t.logical] += t.bytes;
  }
  for (std::size_t i = 0; i < plan.logical.size(); ++i) {
    Count& c = by_cut[cut_group(plan.logical[i])];
    ++c.logical;
    c.bytes += logical_bytes[i];
  }
  text += "by cut (bytes written, replicated tensors once per rank):\n";
  for (const auto& [cut, c] : by_cut) {
    text += fmt::format("  {:<14} {:>8} tensors  {:>10}\n", cut, plan::detail::group_digits(c.logical),
                        plan::detail::human_bytes(c.bytes));
  }
  text += "new rank files (from the old files):\n";
  std::uint64_t largest = 1;
  for (const NewFile& f : plan.outputs) largest = std::max(largest, f.bytes);
  for (const NewFile& f : plan.outputs) {
    std::set<std::size_t> read;
    for (const NewTensor& t : f.tensors) {
      for (const Use& u : uses(plan, t)) read.insert(u.file);
    }
    const auto bar = static_cast<std::size_t>(20 * f.bytes / largest);
    text += fmt::format("  {:<28} {:>8} tensors  {:>10}  {:<20}  reads {} of {} old files\n", f.file,
                        plan::detail::group_digits(f.tensors.size()), plan::detail::human_bytes(f.bytes),
                        std::string(bar, '#'), read.size(), plan.old_files.size());
  }
  text +=
      fmt::format("side files: {}\n", plan.side_files.empty()
                                          ? std::string("none")
                                          : printable(fmt::format("{}", fmt::join(plan.side_files, ", "))));
  return text;
}

}  // namespace shardwise::reshard
