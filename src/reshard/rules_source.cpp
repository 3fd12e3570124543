// Folders without a (version 3) manifest, e.g. written by a reference converter: the rank files'
// names are decided with rules that map them to themselves, and what the manifest would record
// (each tensor's cut) is derived from the decisions and the pieces' shapes.
#include <shardwise/reshard/reshard.hpp>

#include <algorithm>
#include <filesystem>
#include <map>

#include <fnmatch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/safetensors/file.hpp>

#include <shardwise/core/io.hpp>
#include "reshard/reshard_internal.hpp"

namespace shardwise::reshard {

namespace fs = std::filesystem;
using Kind = plan::Placement::Kind;

namespace {

// The rank files the rules' output pattern names, by rank; their mp from the names.
std::vector<std::string> find_rank_files(const std::string& from, const rules::Rules& rules,
                                         std::uint64_t& mp) {
  const std::string& pattern = rules.output_file_pattern();
  const rules::NameTemplate& names = rules.output_file_template();
  std::map<std::uint64_t, std::string> by_rank;  // rank -> file, of files whose name fits the pattern
  std::map<std::uint64_t, std::string> mps;      // mp in the name -> the first such file
  std::error_code ec;
  for (fs::directory_iterator it(from, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const rules::NameMatch m = names.match(name);
    if (m.fit == rules::NameMatch::Fit::number_too_large) {
      throw Error(ErrorKind::input,
                  fmt::format("{}: named as the rules name rank files ({}), but its {{{}}} {} does "
                              "not fit in 64 bits",
                              (fs::path(from) / name).string(), pattern, m.field, m.digits));
    }
    if (m.fit != rules::NameMatch::Fit::yes) continue;
    const std::uint64_t rank = m.values[rules::kRankField];
    const std::uint64_t file_mp = names.uses(rules::kMpField) ? m.values[rules::kMpField] : 1;
    if (mps.count(file_mp) == 0 || name < mps[file_mp]) mps[file_mp] = name;  // the first by name
    by_rank[rank] = name;
  }
  if (by_rank.empty()) {
    throw Error(ErrorKind::input,
                fmt::format("{}: no rank files named as the rules name them ({})", from, pattern));
  }
  if (mps.size() > 1) {
    throw Error(ErrorKind::input,
                fmt::format("{}: rank files of {} model parallelisms ({} and {}): one set at a time", from,
                            mps.size(), mps.begin()->second, mps.rbegin()->second));
  }
  mp = mps.begin()->first;
  std::vector<std::string> files;
  for (std::uint64_t rank = 0; rank < mp; ++rank) {
    const auto it = by_rank.find(rank);
    if (it == by_rank.end()) {
      throw Error(ErrorKind::input,
                  fmt::format("{}: missing (rank {} of mp={})",
                              (fs::path(from) / rules.output_file(rank, mp)).string(), rank, mp));
    }
    files.push_back(it->second);
  }
  if (by_rank.size() != mp) {
    throw Error(ErrorKind::input, fmt::format("{}: {} rank files for mp={}", from, by_rank.size(), mp));
  }
  return files;
}

// What the rules say about one name found in the rank files: its kind, split dim and cut unit, or
// why it cannot be placed.
struct Decided {
  plan::Placement placement;
  std::optional<st::DType> written;  // the dtype a conversion writes, when the rules change it
  std::string refusal;
};

Decided decide(const rules::Rules& rules, const rules::Params& params, const std::string& name,
               const st::TensorInfo& info) {
  const rules::Decision d = rules.decide(name, params, rules::Rules::Trail::omit);
  Decided result;
  using DK = rules::Decision::Kind;
  if (d.kind == DK::unmatched) {
    result.refusal = fmt::format("no rule places it: {}", d.reason);
    return result;
  }
  if (d.kind != DK::place) {
    result.refusal = fmt::format("{} by {}: {} (a conversion does not write it)",
                                 d.kind == DK::skip ? "skipped" : "refused",
                                 d.rule ? d.rule->label : std::string("a rule"), d.reason);
    return result;
  }
  if (d.output != name) {
    result.refusal = fmt::format(
        "the rules rename it to {} (rank files hold output names: the rules must map them to "
        "themselves)",
        d.output);
    return result;
  }
  if (d.owner) {
    result.placement = {Kind::owned, -1, 1, d.owner->index, d.owner->count.value_or(0)};
    return result;
  }
  if (d.split == rules::Split::replicate) return result;
  int dim = d.split == rules::Split::out ? 0 : 1;
  if (d.member != nullptr) {
    if (d.member->cast_to) result.written = d.member->cast_to;
    dim = -1;
    for (int m = 0; m < 2; ++m) {
      if (d.member->dims[m].axis == d.split) dim = dim < 0 ? m : 2;
    }
    if (dim < 0) return result;  // not on the split axis: replicated
    if (dim == 2) {
      result.refusal = fmt::format("both dims of member {} are on the split axis", d.member->suffix);
      return result;
    }
  }
  if (static_cast<std::size_t>(dim) >= info.shape.size()) {
    result.refusal = fmt::format("split on dim {}, but its shape has {} dims", dim, info.shape.size());
    return result;
  }
  std::uint64_t unit = 1;
  // A row permutation keeps the dtype (and a folder records the permuted rows: nothing to redo).
  if (d.transform != nullptr && d.transform->kind != rules::TransformRule::Kind::permute_rope) {
    result.written = d.transform->to;
    if (static_cast<std::size_t>(dim) + 1 == info.shape.size()) {
      unit = st::dtype_bits(d.transform->from) / st::dtype_bits(d.transform->to);
    }
  }
  result.placement = {Kind::split, dim, unit, 0, 0};
  return result;
}

// Names refused, each reported once with the rank files that hold it (a split or replicated
// name is in every one of them).
class Refusals {
 public:
  void add(const std::string& name, std::string reason, const std::string& file) {
    auto [it, fresh] = by_name_.try_emplace(name);
    if (fresh) {
      order_.push_back(name);
      it->second.reason = std::move(reason);
    }
    it->second.files.push_back(file);
  }
  void report(std::uint64_t mp, Diagnostics& problems) const {
    for (const std::string& name : order_) {
      const Refusal& r = by_name_.at(name);
      const std::string where = r.files.size() == 1    ? r.files.front()
                                : r.files.size() == mp ? fmt::format("all {} rank files", mp)
                                                       : fmt::format("{}", fmt::join(r.files, ", "));
      problems.add(fmt::format("{} ({}): {}", name, where, r.reason));
    }
  }

 private:
  struct Refusal {
    std::string reason;
    std::vector<std::string> files;
  };
  std::map<std::string, Refusal> by_name_;
  std::vector<std::string> order_;  // first seen first
};

}  // namespace

output::Manifest manifest_from_rules(const std::string& from, const rules::Rules& rules,
                                     const rules::Params& given, OutsideLinks links) {
  std::uint64_t mp = 0;
  const std::vector<std::string> files = find_rank_files(from, rules, mp);
  rules::Params params = given;
  params.erase("mp");
  params = rules.resolve_params(params, rules::ConfigFiles::folder(from, links)).values;
  params["mp"] = mp;
  output::Manifest manifest;
  manifest.complete = true;
  manifest.rules = {rules.name(), output::xxh3(rules.text()), rules.output_file_pattern(), rules.text()};
  std::map<std::string, std::vector<std::string>> words;
  for (const rules::ParamInfo& param : rules.params()) {
    if (!param.choices.empty()) words[param.name] = param.choices;
  }
  output::set_params(manifest, std::map<std::string, std::uint64_t>(params.begin(), params.end()), words);

  Diagnostics problems(ErrorKind::input);
  std::map<std::string, Decided, std::less<>> decided;  // names repeat over the ranks: decided once
  std::map<std::string, std::uint64_t> inferred;        // ownership scope -> largest index + 1
  Refusals refused;
  std::vector<std::byte> buffer(1 << 20);
  for (std::uint64_t rank = 0; rank < mp; ++rank) {
    const std::string path = (fs::path(from) / files[rank]).string();
    const st::File file = st::File::open(path);
    output::ManifestOutput out{rank, files[rank], file.size(), 0, {}};
    for (const st::TensorInfo& info : file.header().tensors) {
      auto found = decided.find(info.name);
      if (found == decided.end()) {
        std::string key(info.name);
        Decided decision = decide(rules, params, key, info);
        found = decided.emplace(std::move(key), std::move(decision)).first;
      }
      const std::string& name = found->first;
      const Decided& how = found->second;
      if (!how.refusal.empty()) {
        refused.add(name, fmt::format("cannot be placed: {}", how.refusal), files[rank]);
        continue;
      }
      if (how.written && *how.written != info.dtype) {
        refused.add(name,
                    fmt::format("holds {}, the rules write {}: not a folder these rules wrote",
                                st::dtype_name(info.dtype), st::dtype_name(*how.written)),
                    files[rank]);
        continue;
      }
      output::TensorCut cut{info.dtype, info.shape, how.placement, 0, 0, 0};
      std::uint64_t xxh3 = 0;
      if (how.placement.kind == Kind::split) {
        cut.size =
            info.shape[static_cast<std::size_t>(how.placement.dim)] * mp;  // this rank's part, mp times
        const plan::SplitRange range = plan::split_range(cut.size, rank, mp);
        cut.begin = range.begin;
        cut.end = range.end;
      } else if (how.placement.kind == Kind::replicated) {
        // Copies are compared by checksum: computed here, as no manifest recorded them.
        xxh3 = output::hash_file_range(file.fd(), path, file.absolute_offset(info), info.bytes(), buffer);
      }
      out.tensors.push_back({name, xxh3, cut});
    }
    manifest.outputs.push_back(std::move(out));
  }
  refused.report(mp, problems);
  problems.check(fmt::format("cannot reshard {} with rules {}: names the rules do not place as they are",
                             from, rules.display_name()));
  // Ownership counts inferred by the rules (`default: infer`): each scope's largest index + 1.
  for (output::ManifestOutput& out : manifest.outputs) {
    for (output::ManifestTensor& t : out.tensors) {
      if (t.cut->placement.kind != Kind::owned || t.cut->placement.count != 0) continue;
      const rules::Decision d = rules.decide(t.name, params, rules::Rules::Trail::omit);
      const std::string scope = t.name.substr(0, d.owner->index_begin);
      inferred[scope] = std::max(inferred[scope], t.cut->placement.index + 1);
    }
  }
  for (output::ManifestOutput& out : manifest.outputs) {
    for (output::ManifestTensor& t : out.tensors) {
      if (t.cut->placement.kind != Kind::owned || t.cut->placement.count != 0) continue;
      const rules::Decision d = rules.decide(t.name, params, rules::Rules::Trail::omit);
      t.cut->placement.count = inferred[t.name.substr(0, d.owner->index_begin)];
    }
  }
  // Side files: those the rules copy, found in the folder.
  std::error_code ec;
  std::vector<std::string> sides;
  for (const std::string& pattern : rules.side_files()) {
    for (fs::directory_iterator it(from, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (it->is_regular_file() && fnmatch(pattern.c_str(), name.c_str(), FNM_PERIOD) == 0 &&
          std::find(sides.begin(), sides.end(), name) == sides.end()) {
        sides.push_back(name);
      }
    }
  }
  std::sort(sides.begin(), sides.end());
  for (const std::string& name : sides) {
    const std::string path = (fs::path(from) / name).string();
    const io::ReadOnlyFile file(path);
    manifest.side_files.push_back(
        {name, output::hash_file_range(file.fd(), path, 0, file.size(), buffer), false});
  }
  return manifest;
}

}  // namespace shardwise::reshard
