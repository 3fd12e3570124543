// plan_checkpoint: visits the checkpoint's tensors in the reference converter's order, lets the
// rules decide each, and places them: plain tensors at once, packed members once their group is
// complete. Every problem is collected; the plan is returned only when there is none.

#include <shardwise/plan/planner.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include <fnmatch.h>

#include <fmt/format.h>

#include <shardwise/core/memory.hpp>
#include <shardwise/plan/plan_view.hpp>
#include "plan/block_pairs.hpp"
#include "plan/companion_skips.hpp"
#include "plan/composite.hpp"
#include "plan/decision_stream.hpp"
#include "plan/hf_layout.hpp"
#include "plan/mirror.hpp"
#include "plan/ownership_scopes.hpp"
#include "plan/packed_groups.hpp"
#include "plan/placer.hpp"
#include "plan/row_permutations.hpp"
#include "plan/side_files.hpp"

namespace shardwise::plan {
namespace {

using detail::Placer;
using detail::Target;

// The dtype and cast a transform rule gives a plain tensor; nullopt (reported) when the source does
// not fit it. A block-scaled transform also marks the target for BlockPairs, which finds its companion.
// A row permutation is no cast: it marks the target with its permutation.
std::optional<std::pair<st::DType, Cast>> transformed(Target& target, const rules::TransformRule* transform,
                                                      Placer& placer, detail::BlockPairs& pairs,
                                                      detail::RowPermutations& permutations) {
  const Source& src = placer.source(target.source);
  if (transform == nullptr) return std::pair{src.dtype, Cast::none};
  using Kind = rules::TransformRule::Kind;
  if (transform->kind == Kind::permute_rope) {
    const auto permutation = permutations.add(src, *transform, placer.problems());
    if (!permutation) return std::nullopt;
    target.permutation = *permutation;
    return std::pair{src.dtype, Cast::none};
  }
  if (transform->kind == Kind::dequantize) {
    // Only the listed dtypes are dequantized: a weight of another dtype is written as it is.
    const auto& dtypes = transform->dtypes;
    if (!dtypes.empty() && std::find(dtypes.begin(), dtypes.end(), src.dtype) == dtypes.end()) {
      return std::pair{src.dtype, Cast::none};
    }
  }
  if (transform->kind == Kind::reinterpret && (src.dtype != transform->from || src.shape.empty())) {
    placer.problems().add(fmt::format("{}: {} reinterprets {} as {}, but the tensor is {}{} ({})", src.name,
                                      transform->rule.label, st::dtype_name(transform->from),
                                      st::dtype_name(transform->to), st::dtype_name(src.dtype),
                                      src.shape.empty() ? " with no dims" : "", transform->rule.where.str()));
    return std::nullopt;
  }
  if (src.dtype != transform->from || src.shape.size() != 2) {
    placer.problems().add(
        fmt::format("{}: {} ({}) needs {}{}, but the tensor is {}{} ({})", src.name, transform->rule.label,
                    rules::describe_transform(*transform), st::dtype_name(transform->from), " of 2 dims",
                    st::dtype_name(src.dtype), st::shape_text(src.shape), transform->rule.where.str()));
    return std::nullopt;
  }
  switch (transform->kind) {
    case Kind::reinterpret:
      return std::pair{transform->to, Cast::reinterpret};
    case Kind::dequantize:
      target.pending_transform = pairs.pending(*transform);
      return std::pair{transform->to, Cast::dequantize};
    case Kind::dequantize_packed: {
      // The whole packed weight becomes one tensor under the transform's name; its shape is known
      // once its companions are (BlockPairs).
      if (target.split != rules::Split::replicate) {
        placer.problems().add(fmt::format("{}: {} ({}) writes whole weights, but the rules split it ({})",
                                          src.name, transform->rule.label, transform->rule.where.str(),
                                          rules::split_name(target.split)));
        return std::nullopt;
      }
      const auto dot = target.output.rfind('.');
      std::array<std::string_view, rules::kCompanionFields.size()> values;
      values[rules::kNameField] = target.output;
      values[rules::kStemField] = dot == std::string::npos ? std::string_view(target.output)
                                                           : std::string_view(target.output).substr(0, dot);
      target.output = placer.name(target.source, transform->output.expand(values));
      target.pending_transform = pairs.pending(*transform);
      return std::pair{transform->to, Cast::dequantize_packed};
    }
    case Kind::requantize:
      target.pending_transform = pairs.pending(*transform);
      return std::pair{st::DType::F8_E4M3, Cast::requantize_fp4_weight};
    case Kind::requantize_scale:
      if (src.shape[0] % 128 != 0 || src.shape[1] * 32 % 128 != 0) {
        placer.problems().add(
            fmt::format("{}: {} needs an E8M0 per-32 scale of whole 128x128 blocks, but it is {} "
                        "(for a weight of {} x {}) ({})",
                        src.name, transform->rule.label, st::shape_text(src.shape), src.shape[0],
                        src.shape[1] * 32, transform->rule.where.str()));
        return std::nullopt;
      }
      target.pending_transform = pairs.pending(*transform);
      return std::pair{st::DType::F8_E8M0, Cast::requantize_fp4_scale};
    case Kind::permute_rope:
      break;  // handled above
  }
  return std::nullopt;
}

void place_plain(Target& target, const rules::TransformRule* transform, Placer& placer,
                 detail::BlockPairs& pairs, detail::RowPermutations& permutations) {
  const auto written = transformed(target, transform, placer, pairs, permutations);
  if (!written) return;
  const auto [dtype, cast] = *written;
  if (target.owner) {
    placer.defer_owned(target, dtype, cast);
  } else if (target.split == rules::Split::replicate) {
    placer.add_everywhere(target, dtype, cast);
  } else {
    // A plain tensor is the logical weight itself: [out, in].
    const int dim = target.split == rules::Split::out ? 0 : 1;
    if (target.units != 0) {
      placer.add_split_units(target, dim, target.split, dtype, cast);
    } else {
      placer.add_split(target, dim, 1, target.split, dtype, cast);
    }
  }
}

// The source of one chunk of an unfused input tensor (rules `unfuse:`): its rows, which are a
// contiguous tensor of the input file. nullopt (reported) when the rows do not divide.
std::optional<Source> chunk_source(const st::Checkpoint& checkpoint, const st::TensorRef& ref,
                                   const rules::DecidedChunk& chunk, Name name, Diagnostics& problems) {
  const st::TensorInfo& info = *ref.info;
  const st::File& file = checkpoint.files()[ref.file];
  if (info.shape.empty() || chunk.total == 0 || info.shape[0] % chunk.total != 0) {
    problems.add(
        fmt::format("{} ({}): {} cannot cut {} along dim 0 in proportion {} of {} ({}): {} rows are not a "
                    "multiple of {}",
                    info.name, checkpoint.file_name(ref.file), chunk.rule->rule.label,
                    st::shape_text(info.shape), chunk.size, chunk.total, chunk.rule->rule.where.str(),
                    info.shape.empty() ? 0 : info.shape[0], chunk.total));
    return std::nullopt;
  }
  const std::uint64_t rows = info.shape[0] / chunk.total;
  const std::uint64_t row_bytes = info.bytes() / info.shape[0];
  Source source{ref.file, std::move(name), info.dtype, Shape(info.shape)};
  source.shape[0] = rows * chunk.size;
  source.offset = file.absolute_offset(info) + chunk.first * rows * row_bytes;
  source.bytes = source.shape[0] * row_bytes;
  source.within = Slice{0, chunk.first * rows, (chunk.first + chunk.size) * rows};
  source.whole_rows = info.shape[0];
  return source;
}

// Transform rules that match members of packed layouts, which they cannot apply to: reported once
// per rule and layout after the loop (a layout repeats its members in every layer), the member
// still joining its group so that the group is not also reported incomplete.
class MemberTransforms {
 public:
  void add(const rules::Decision& d, const std::string& name) {
    const auto it = seen_.try_emplace({d.transform, d.layout}, Seen{name, 0}).first;
    ++it->second.count;
  }
  void report(Diagnostics& problems) const {
    for (const auto& [key, seen] : seen_) {
      const auto& [transform, layout] = key;
      problems.add(
          fmt::format("{} ({}) applies to {} member{} of packed layout {} (the first: {}); transforms "
                      "apply to plain tensors only",
                      transform->rule.label, transform->rule.where.str(), seen.count,
                      seen.count == 1 ? "" : "s", layout->name, seen.first));
    }
  }

 private:
  struct Seen {
    std::string first;
    std::size_t count = 0;
  };
  std::map<std::pair<const rules::TransformRule*, const rules::Layout*>, Seen> seen_;
};

// The parameters given by the caller, without mp (the plan's own value).
rules::Params given_params(const PlanOptions& options) {
  rules::Params given = options.params;
  given.erase("mp");
  return given;
}

// The plan's arena of names, which also keeps the checkpoint's headers' blocks of names alive
// (held by its deleter, which the arena's copies share): the sources borrow the input tensors'
// names from them, and 217,000 names of a Pro-sized checkpoint are not copied.
std::shared_ptr<NameArena> arena_keeping_names(const st::Checkpoint& checkpoint) {
  std::vector<std::shared_ptr<const char[]>> blocks;
  for (const st::File& file : checkpoint.files()) blocks.push_back(file.header().names);
  return std::shared_ptr<NameArena>(new NameArena(),
                                    [blocks = std::move(blocks)](const NameArena* arena) { delete arena; });
}

// An input tensor's name as its sources hold it: borrowed from its header's names (NUL-terminated,
// kept alive by the plan's arena: arena_keeping_names), or copied into the arena for a header
// without a block of names.
Name source_name(const st::Checkpoint& checkpoint, const st::TensorRef& ref, NameArena& arena) {
  if (checkpoint.files()[ref.file].header().names) return Name::borrowed(ref.info->name);
  return Name::borrowed(arena.add(ref.info->name));
}

Plan empty_plan(const st::Checkpoint& checkpoint, const rules::Rules& rules, const PlanOptions& options) {
  Plan plan;
  plan.name_arena = arena_keeping_names(checkpoint);
  plan.model_parallel = options.model_parallel;
  rules::ResolvedParams resolved = rules.resolve_params(
      given_params(options), rules::ConfigFiles::folder(checkpoint.root(), options.outside_links));
  resolved.values["mp"] = options.model_parallel;
  plan.params.insert(resolved.values.begin(), resolved.values.end());
  for (const rules::ParamInfo& param : rules.params()) {
    if (!param.choices.empty()) plan.param_choices[param.name] = param.choices;
    if (!param.from_config.empty())
      plan.param_sources.insert(resolved.sources.begin(), resolved.sources.end());
  }
  plan.rules_name = rules.display_name();
  plan.input_root = checkpoint.root();
  plan.outside_links = options.outside_links;
  plan.input_files.reserve(checkpoint.files().size());
  for (const st::File& file : checkpoint.files()) {
    plan.input_files.push_back(std::filesystem::absolute(file.path()).lexically_normal().string());
    // A conversion compares these again before it vouches for its output (the input must not change).
    plan.input_identities.push_back(identity_of_open_file(file.fd(), file.path()));
  }
  plan.input_bytes = checkpoint.total_bytes();
  if (rules.mirrors_input()) {
    detail::make_mirrored_outputs(plan, checkpoint);
    return plan;
  }
  if (rules.output_layout() == rules::OutputLayout::hf) {
    // Planned as one rank; make_hf_outputs assigns the files once every tensor is known.
    plan.naming = OutputNaming::hf;
    plan.max_shard_size = options.mirror ? 0 : options.max_shard_size.value_or(rules.max_shard_size());
    plan.outputs.resize(1);
    return plan;
  }
  plan.outputs.resize(options.model_parallel);
  for (std::uint64_t rank = 0; rank < options.model_parallel; ++rank) {
    plan.outputs[rank].rank = rank;
    plan.outputs[rank].file = rules.output_file(rank, options.model_parallel);
  }
  return plan;
}

// Sorts each rank's tensors by output name and reports names produced twice on one rank (once per
// pair of sources, with the ranks where they meet).
void finish_outputs(Plan& plan, Placer& placer) {
  std::map<std::tuple<std::string, std::size_t, std::size_t>, std::vector<std::uint64_t>> clashes;
  const auto by_name = [](const PlannedTensor& a, const PlannedTensor& b) {
    return std::tie(a.name, a.source) < std::tie(b.name, b.source);
  };
  for (OutputFile& out : plan.outputs) {
    // Tensors arrive in source-name order, which renames seldom disturb, then the owned tensors
    // (placed last, also in order): often two sorted runs to merge, not a sort.
    const auto end = out.tensors.end();
    const auto unsorted = std::is_sorted_until(out.tensors.begin(), end, by_name);
    if (std::is_sorted(unsorted, end, by_name)) {
      std::inplace_merge(out.tensors.begin(), unsorted, end, by_name);
    } else {
      std::sort(out.tensors.begin(), end, by_name);
    }
    for (std::size_t i = 1; i < out.tensors.size(); ++i) {
      const PlannedTensor& a = out.tensors[i - 1];
      const PlannedTensor& b = out.tensors[i];
      if (a.name == b.name) clashes[{a.name, a.source, b.source}].push_back(out.rank);
    }
  }
  for (const auto& [key, ranks] : clashes) {
    const auto& [name, first, second] = key;
    const std::string where = ranks.size() == plan.model_parallel && ranks.size() > 1
                                  ? std::string("every rank")
                                  : fmt::format("rank {}", detail::format_ranks(ranks));
    placer.problems().add(fmt::format("{}: output name produced twice on {}, by {} and by {}", name, where,
                                      placer.describe(first), placer.describe(second)));
  }
}

// How many tensors ahead the placer fetches a packed member's slot in the groups' index.
constexpr std::size_t kGroupPrefetch = 8;

bool is_glob(const std::string& pattern) { return pattern.find_first_of("*?[") != std::string::npos; }

// The input folder's regular files whose names match a shell pattern, in name order. Like Python's
// glob (which DeepSeek's scripts use), `*` does not match a leading dot.
std::vector<std::string> files_matching(const std::string& root, const std::string& pattern) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    std::error_code type_ec;
    if (!entry.is_regular_file(type_ec)) continue;
    std::string name = entry.path().filename().string();
    if (fnmatch(pattern.c_str(), name.c_str(), FNM_PERIOD) == 0) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Side files: each listed name present in the input folder, and every file a pattern matches; a
// file named twice is copied once. One that leads outside the folder is a problem (unless allowed).
// Never copied: a file the rules drop or rewrite, a shardwise manifest (the output has its own, and
// an input's describes another conversion), and by a pattern the checkpoint's tensor files and
// index (the output has its own).
void find_side_files(Plan& plan, const rules::Rules& rules, Diagnostics& problems) {
  std::set<std::string> excluded{kManifestFileName}, read_by_plan{detail::kIndexFileName};
  for (const rules::SideFileRule& rule : rules.side_file_rules()) excluded.insert(rule.name);
  for (const std::string& path : plan.input_files)
    read_by_plan.insert(std::filesystem::path(path).filename().string());
  const auto add = [&plan, &problems, &excluded](std::string name) {
    if (excluded.count(name) != 0) return;
    if (std::find(plan.side_files.begin(), plan.side_files.end(), name) != plan.side_files.end()) return;
    try {
      check_inside_folder(plan.input_root, name, plan.outside_links);
    } catch (const Error& e) {
      problems.add(e.what());
      return;
    }
    const std::string path = (std::filesystem::path(plan.input_root) / name).string();
    const std::optional<FileIdentity> identity = identity_of_path(path);
    if (!identity) return;  // removed since it was listed
    plan.side_files.push_back(std::move(name));
    plan.side_file_identities.push_back(*identity);
  };
  for (const std::string& name : rules.side_files()) {
    if (is_glob(name)) {
      for (std::string& match : files_matching(plan.input_root, name)) {
        if (read_by_plan.count(match) == 0) add(std::move(match));
      }
      continue;
    }
    std::error_code ec;
    if (std::filesystem::is_regular_file(std::filesystem::path(plan.input_root) / name, ec)) add(name);
  }
}

// --max-shard-size and --mirror choose among Hugging Face's layouts; --model-parallel has no
// meaning without ranks.
void check_output_options(const rules::Rules& rules, const PlanOptions& options) {
  const bool hf = rules.output_layout() == rules::OutputLayout::hf;
  if (!hf && (options.max_shard_size || options.mirror)) {
    throw Error(ErrorKind::usage,
                fmt::format("{} applies to rules whose output is Hugging Face's layout (output: {{layout: "
                            "hf}}); the rules {} write {}",
                            options.mirror ? "--mirror" : "--max-shard-size", rules.name(),
                            rules.mirrors_input() ? "the input's files (mirrored)" : "one file per rank"));
  }
  if (options.max_shard_size && options.mirror) {
    throw Error(ErrorKind::usage,
                "--max-shard-size (Hugging Face's shards) and --mirror (one file per input file) exclude "
                "each other");
  }
  if (hf && options.model_parallel != 1) {
    throw Error(ErrorKind::usage,
                fmt::format("rules {} write Hugging Face's layout, which has no ranks: --model-parallel "
                            "does not apply (given {}); --max-shard-size sets the size of its files",
                            rules.name(), options.model_parallel));
  }
  if (rules.mirrors_input() && options.model_parallel != 1) {
    throw Error(ErrorKind::usage,
                fmt::format("rules {} mirror the input's files (one output file per input file): "
                            "--model-parallel does not apply (given {})",
                            rules.name(), options.model_parallel));
  }
}

}  // namespace

Plan plan_checkpoint(const st::Checkpoint& checkpoint, const rules::Rules& rules,
                     const PlanOptions& options) {
  check_output_options(rules, options);
  if (options.model_parallel == 0 || options.model_parallel > kMaxModelParallel) {
    throw Error(ErrorKind::usage, fmt::format("model parallelism must be between 1 and {}, not {}",
                                              kMaxModelParallel, options.model_parallel));
  }
  Plan plan = empty_plan(checkpoint, rules, options);
  rules::Params params(plan.params.begin(), plan.params.end());
  Diagnostics problems(ErrorKind::input);
  detail::OwnershipScopes scopes(given_params(options), options.model_parallel, plan.param_sources);
  Placer placer(plan, problems, options.model_parallel, checkpoint.tensors().size(), &scopes);
  detail::PackedGroups groups(checkpoint.tensors().size(), params);
  detail::RuleLabels labels(plan.rule_labels);
  detail::BlockPairs pairs;
  detail::CompanionSkips companion_skips;
  detail::RowPermutations permutations(plan, labels, params);
  MemberTransforms member_transforms;

  detail::DecisionStream decisions(checkpoint, rules, params);
  detail::Composer composer;
  // An output name of `source`: its own when the deciding thread found them equal.
  const auto output_name = [&](const rules::Decision& decision, bool output_is_source, std::size_t source) {
    return output_is_source ? plan.sources[source].name : placer.name(source, decision.output);
  };
  // A placed decision of the source `source` (an input tensor, or a chunk of one).
  // Whether the tensor before the one being placed was added to the scopes / the groups.
  bool scoped_last = false;
  bool grouped_last = false;
  const auto place_decision = [&](rules::Decision& decision, bool output_is_source, std::size_t group_hash,
                                  bool same_scope, bool same_group, std::size_t source) {
    Target target{source, output_name(decision, output_is_source, source), labels(*decision.rule),
                  decision.split, std::nullopt};
    target.units = decision.split_units;
    target.units_param = decision.units_param;
    if (decision.owner) {
      target.owner =
          detail::Owner{decision.owner->index, scopes.add(*decision.owner, target.output, same_scope)};
      scoped_last = true;
    }
    if (decision.fuse) {
      if (decision.layout != nullptr) {
        problems.add(
            fmt::format("{}: {} makes a packed member ({}) a part of {}: packed members cannot be fused",
                        plan.sources[source].name, decision.fuse->rule->rule.label, decision.layout->name,
                        decision.fuse->output));
      }
      composer.add(source, std::move(*decision.fuse));
    }
    if (decision.layout != nullptr) {
      if (decision.transform != nullptr) member_transforms.add(decision, plan.sources[source].name);
      groups.add(decision, group_hash, same_group, std::move(target), placer);
      grouped_last = true;
    } else {
      place_plain(target, decision.transform, placer, pairs, permutations);
    }
  };

  plan.sources.reserve(checkpoint.tensors().size());
  advise_huge_pages(plan.sources.data(), checkpoint.tensors().size() * sizeof(Source));
  if (plan.naming == OutputNaming::per_rank) {
    // Each rank's list is reserved for twice its share of the tensors, so that it is not copied as it
    // grows (Pro: 30,000 tensors of 144 bytes a rank), and not copied to its size at the end: the pages
    // of the reserve that no tensor reaches are never written, and cost no memory (the huge pages
    // cover the share only, which is written).
    const std::size_t share = checkpoint.tensors().size() / plan.outputs.size();
    for (OutputFile& out : plan.outputs) {
      out.tensors.reserve(2 * share + 64);
      advise_huge_pages(out.tensors.data(), share * sizeof(PlannedTensor));
    }
  }
  for (const st::TensorRef& ref : checkpoint.tensors()) {
    const st::TensorInfo& info = *ref.info;
    detail::Decided& decision = decisions.next();
    const bool same_scope = decision.same_scope_as_previous && scoped_last;
    const bool same_group = decision.same_group_as_previous && grouped_last;
    scoped_last = grouped_last = false;
    // A new group's slot in the index is loaded from memory while the tensors before it are placed.
    if (const detail::Decided* later = decisions.peek(kGroupPrefetch);
        later != nullptr && later->group_hash != 0)
      groups.prefetch(later->group_hash);
    if (decision.kind == rules::Decision::Kind::skip) {
      plan.skipped.push_back(Skipped{std::string(info.name), checkpoint.file_name(ref.file),
                                     plan.rule_labels[labels(*decision.rule)], std::move(decision.reason)});
      if (decision.companion_of != nullptr) {
        companion_skips.add(std::string(info.name), plan.skipped.back().file, plan.skipped.back().rule,
                            *decision.companion_of);
      }
      continue;
    }
    if (decision.kind == rules::Decision::Kind::reject) {
      problems.add(fmt::format("{} ({}): refused by {}: {}", info.name, checkpoint.file_name(ref.file),
                               plan.rule_labels[labels(*decision.rule)], decision.reason));
      continue;
    }
    if (decision.kind == rules::Decision::Kind::unmatched) {
      problems.add(fmt::format("{} ({}): no rule places it: {}", info.name, checkpoint.file_name(ref.file),
                               decision.reason));
      continue;
    }
    if (!decision.chunks.empty()) {
      if (plan.naming == OutputNaming::mirror) {
        problems.add(fmt::format("{} ({}): {} cuts it into chunks, which mirrored output cannot write",
                                 info.name, checkpoint.file_name(ref.file),
                                 plan.rule_labels[labels(*decision.rule)]));
        continue;
      }
      for (rules::DecidedChunk& chunk : decision.chunks) {
        rules::Decision& part = *chunk.decision;
        if (part.kind != rules::Decision::Kind::place) {
          problems.add(fmt::format("{} ({}): its chunk {} of {} is not placed: {}", info.name,
                                   checkpoint.file_name(ref.file), part.normalized, chunk.rule->rule.label,
                                   part.kind == rules::Decision::Kind::unmatched
                                       ? part.reason
                                       : "chunks may not be skipped or refused"));
          continue;
        }
        std::optional<Source> source =
            chunk_source(checkpoint, ref, chunk, source_name(checkpoint, ref, *plan.name_arena), problems);
        if (!source) continue;
        plan.sources.push_back(std::move(*source));
        const std::size_t group_hash =
            part.layout != nullptr ? detail::PackedGroups::hash(part.layout, part.group) : 0;
        place_decision(part, false, group_hash, false, false, plan.sources.size() - 1);
      }
      continue;
    }
    const st::File& file = checkpoint.files()[ref.file];
    plan.sources.push_back(Source{ref.file, source_name(checkpoint, ref, *plan.name_arena), info.dtype,
                                  Shape(info.shape), file.absolute_offset(info), info.bytes(), Slice{}});
    if (plan.naming == OutputNaming::mirror) {
      Target target{plan.sources.size() - 1,
                    output_name(decision, decision.output_is_source, plan.sources.size() - 1),
                    labels(*decision.rule), decision.split, std::nullopt};
      if (detail::fits_mirror(decision, target.output, plan.rule_labels[target.rule], problems)) {
        const auto written = transformed(target, decision.transform, placer, pairs, permutations);
        if (written) placer.add_owned(ref.file, target, written->first, written->second, plan::Placement{});
      }
      if (decision.fuse) {
        problems.add(fmt::format("{}: {} makes it a part of {}, which mirrored output cannot write",
                                 info.name, decision.fuse->rule->rule.label, decision.fuse->output));
      }
      continue;
    }
    place_decision(decision, decision.output_is_source, decision.group_hash, same_scope, same_group,
                   plan.sources.size() - 1);
  }
  groups.report_incomplete(placer);
  groups.clear();
  member_transforms.report(problems);
  scopes.check(problems, plan.notes);
  placer.place_owned(scopes);
  composer.compose(plan, labels, problems);
  finish_outputs(plan, placer);
  pairs.resolve(plan, checkpoint, labels, problems);
  companion_skips.report(plan, checkpoint, problems);
  plan.companions.shrink_to_fit();  // as the outputs' tensors: the plan outlives the run
  find_side_files(plan, rules, problems);
  detail::apply_side_file_rules(plan, rules, problems);
  if (plan.naming == OutputNaming::mirror) detail::add_mirrored_index(plan, problems);
  if (plan.naming == OutputNaming::hf && problems.empty()) detail::make_hf_outputs(plan, checkpoint);
  problems.check(
      plan.naming == OutputNaming::mirror
          ? fmt::format("cannot plan {} (mirrored) with {}", plan.input_root, plan.rules_name)
      : plan.naming == OutputNaming::hf
          ? fmt::format("cannot plan {} (Hugging Face layout) with {}", plan.input_root, plan.rules_name)
          : fmt::format("cannot plan {} for mp={} with {}", plan.input_root, plan.model_parallel,
                        plan.rules_name));
  return plan;
}

}  // namespace shardwise::plan
