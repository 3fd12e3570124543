// Planning a reshard: the old folder read and checked against its manifest, its tensors gathered
// into logical tensors, and those cut again for the new model parallelism.
#include <shardwise/reshard/reshard.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/safetensors/file.hpp>

#include "reshard/fused_parts.hpp"
#include "reshard/old_entries.hpp"
#include "reshard/piece_check.hpp"
#include "reshard/reshard_internal.hpp"

namespace shardwise::reshard {

namespace fs = std::filesystem;
using Kind = plan::Placement::Kind;

namespace {

std::string kind_text(const plan::Placement& p) {
  switch (p.kind) {
    case Kind::split:
      return fmt::format("split on dim {}", p.dim);
    case Kind::owned:
      return fmt::format("owned ({} of {})", p.index, p.count);
    case Kind::composite:
      return "fused";
    case Kind::replicated:
      break;
  }
  return "replicated";
}

// The old folder's manifest (read, or derived with rules): complete, version 3 (cuts recorded), one
// entry per rank 0..mp-1.
void check_old_manifest(const std::optional<output::Manifest>& manifest, const Entries& entries,
                        const std::string& where, std::uint64_t& mp) {
  if (!manifest) {
    throw Error(
        ErrorKind::input,
        fmt::format("{}: missing: reshard reads folders shardwise wrote, or others with --rules and the "
                    "rules' parameters (docs/reshard.md)",
                    where));
  }
  if (!manifest->complete) {
    throw Error(ErrorKind::input,
                fmt::format("{}: incomplete (\"complete\": false): the conversion that wrote the "
                            "folder did not finish; finish it (convert --resume) first",
                            where));
  }
  if (manifest->output_layout == "hf") {
    throw Error(ErrorKind::input,
                fmt::format("{}: written by rules '{}' in Hugging Face's layout ({}): its files are "
                            "shards of one checkpoint, not rank files, so there is no model parallelism "
                            "to change; convert the original checkpoint with rules that write rank files",
                            where, manifest->rules.name,
                            manifest->max_shard_size == 0
                                ? std::string("one file per input file")
                                : fmt::format("max shard size {} bytes", manifest->max_shard_size)));
  }
  if (manifest->rules.output_file.empty()) {
    // Version 3 records a cut for every tensor; only rules that mirror the input's files (one
    // output per input file, no rank pattern) leave the pattern out.
    bool cuts = false;
    for (std::size_t i = 0; i < entries.size(); ++i) cuts = cuts || entries[i].has_cut;
    if (cuts) {
      throw Error(
          ErrorKind::input,
          fmt::format("{}: written by rules '{}', whose output mirrors the input's files (one output per "
                      "input file, no ranks): there is no model parallelism to change",
                      where, manifest->rules.name));
    }
    throw Error(
        ErrorKind::input,
        fmt::format("{}: written before manifest version 3, it does not record how its tensors were cut "
                    "(convert the original checkpoint again to reshard it)",
                    where));
  }
  const std::vector<std::string> listing = output::file_list_problems(*manifest);
  if (!listing.empty()) {
    std::vector<std::string> lines;
    for (const std::string& problem : listing) lines.push_back(fmt::format("{}: {}", where, problem));
    throw Error(ErrorKind::input, fmt::format("{}", fmt::join(lines, "\n")));
  }
  mp = manifest->params.at("mp");
  for (std::size_t i = 0; i < entries.outputs(); ++i) {
    for (const std::uint32_t e : entries.of_output(i)) {
      const Entry& t = entries[e];
      if (!t.has_cut) {
        throw Error(
            ErrorKind::input,
            fmt::format("{}: {} in {} has no recorded cut (manifests before version 3 do not record how "
                        "tensors were cut: convert the original checkpoint again to reshard it)",
                        where, t.name, manifest->outputs[i].file));
      }
    }
  }
}

// Safetensors files in the old folder that its manifest does not list: rank files of another set
// mixed in would otherwise go unnoticed.
void check_no_stray_rank_files(const ReshardPlan& plan, Diagnostics& problems) {
  std::set<std::string> listed;
  for (const output::ManifestOutput& out : plan.from_manifest.outputs) listed.insert(out.file);
  std::vector<std::string> stray;
  std::error_code ec;
  for (fs::directory_iterator it(plan.from, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.ends_with(".safetensors") && listed.count(name) == 0) stray.push_back(name);
  }
  std::sort(stray.begin(), stray.end());
  for (const std::string& name : stray) {
    problems.add(
        fmt::format("{}: a tensor file the manifest does not list (the folder's set is mp={}: {} .. {})",
                    (fs::path(plan.from) / name).string(), plan.from_model_parallel,
                    plan.from_manifest.outputs.front().file, plan.from_manifest.outputs.back().file));
  }
}

// What reading does with a fused output's parts and with a split held by several ranks
// (replicas): refuse them (reshard cuts logical tensors in mp equal ranges, which neither is), or
// gather each part as a logical tensor of its own and each replicated range once (convert
// --reverse, which writes every tensor whole).
enum class Parts { refuse, gather };

// Every old rank file opened and compared with its manifest entries; the entries that agree become
// pieces (Entries::mark_seen, in the order read). With `recorded`, the manifest's checksums of split
// and owned pieces are kept for the executor to compare (a manifest derived with rules records
// none), and so are those of replicated copies checked when written; the others are hashed here.
void read_old_files(ReshardPlan& plan, Entries& entries, bool recorded, CopyCheck copies, Parts parts,
                    Diagnostics& problems) {
  std::uint32_t seen = 0;
  std::vector<std::byte> buffer(1 << 20);
  struct Refused {
    std::set<std::string> names;
    std::string first;
    std::uint64_t replicas = 1;
  };
  Refused fused;
  Refused held_by_several;
  for (std::size_t o = 0; o < plan.from_manifest.outputs.size(); ++o) {
    const output::ManifestOutput& out = plan.from_manifest.outputs[o];
    const std::vector<std::uint32_t>& listed_entries = entries.of_output(o);
    const std::string path = (fs::path(plan.from) / out.file).string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      problems.add(fmt::format("{}: missing (rank {} of mp={})", path, out.rank, plan.from_model_parallel));
      continue;
    }
    std::optional<st::File> file;
    try {
      file.emplace(st::File::open(path));
      check_inside_folder(plan.from, out.file, plan.outside_links, file->fd());
    } catch (const Error& e) {
      problems.add(e.what());
      continue;
    }
    if (file->size() != out.bytes) {
      problems.add(fmt::format("{}: {} bytes, the manifest says {}", path, file->size(), out.bytes));
      continue;
    }
    const auto& tensors = file->header().tensors;
    std::vector<std::string_view> listed;
    listed.reserve(listed_entries.size());
    for (const std::uint32_t e : listed_entries) listed.push_back(entries[e].name.view());
    std::sort(listed.begin(), listed.end());
    for (const st::TensorInfo& info : tensors) {
      if (!std::binary_search(listed.begin(), listed.end(), std::string_view(info.name)))
        problems.add(fmt::format("{}: {} is not in the manifest", path, info.name));
    }
    std::vector<std::string_view>().swap(listed);
    const std::size_t index = plan.old_files.size();
    plan.old_files.push_back({out.rank, out.file, path, identity_of_open_file(file->fd(), path)});
    for (const std::uint32_t e : listed_entries) {
      Entry& t = entries[e];
      const std::string_view name = t.name.view();
      if (parts == Parts::gather && t.has_cut && t.placement.kind == Kind::composite && t.composite) {
        const st::TensorInfo* info = file->header().find(name);
        if (info == nullptr || info->dtype != t.dtype || !(t.shape == info->shape)) {
          problems.add(fmt::format("{}: {} is not in the file as the manifest says ({}{})", path, name,
                                   st::dtype_name(t.dtype), st::shape_text(st::Shape(t.shape))));
          continue;
        }
        const output::ManifestTensor whole{
            std::string(name), t.xxh3,
            output::TensorCut{t.dtype, st::Shape(t.shape), t.placement, t.begin, t.end, t.size, t.composite},
            std::nullopt};
        for (FusedPart& part : fused_parts(whole, index, file->fd(), path, file->absolute_offset(*info),
                                           info->bytes(), buffer, problems)) {
          Entry piece;
          piece.name = arena_name(plan, part.name);
          piece.xxh3 = part.xxh3;
          piece.dtype = part.cut->dtype;
          piece.shape = plan::Shape(part.cut->shape);
          piece.placement = part.cut->placement;
          piece.size = part.cut->size;
          piece.has_cut = true;
          piece.piece = part.piece;
          const std::size_t added = entries.size();
          entries.add(std::nullopt, std::move(piece));
          entries.mark_seen(added, ++seen);
        }
        continue;
      }
      if (parts == Parts::refuse && t.has_cut &&
          (t.placement.kind == Kind::composite || t.placement.replicas > 1)) {
        // Not gathered: reshard cuts logical tensors in mp equal ranges, which neither is. Said once
        // per kind after the files (a model has thousands on every rank).
        Refused& kind = t.placement.kind == Kind::composite ? fused : held_by_several;
        if (kind.names.insert(std::string(name)).second && kind.names.size() == 1) {
          kind.first = fmt::format("{} in {}", name, out.file);
          kind.replicas = t.placement.replicas;
        }
        continue;
      }
      const st::TensorInfo* info = file->header().find(name);
      if (info == nullptr) {
        problems.add(fmt::format("{}: {} is in the manifest but not in the file", path, name));
        continue;
      }
      if (info->dtype != t.dtype || !(t.shape == info->shape)) {
        problems.add(fmt::format("{}: {} is {}{}, the manifest says {}{}", path, name,
                                 st::dtype_name(info->dtype), st::shape_text(info->shape),
                                 st::dtype_name(t.dtype), st::shape_text(st::Shape(t.shape))));
        continue;
      }
      Piece piece{index, file->absolute_offset(*info), t.begin, t.end, info->bytes(), std::nullopt};
      const bool replicated = t.placement.kind == Kind::replicated;
      const std::uint64_t replicas = t.placement.replicas;
      if (replicas > 1 && out.rank % replicas != 0) {
        // A copy of the range the first of its ranks holds, never read: compared now.
        const std::uint64_t actual =
            output::hash_file_range(file->fd(), path, piece.offset, info->bytes(), buffer);
        if (actual != t.xxh3) {
          problems.add(damage_message(path, name, false, actual, t.xxh3));
          continue;
        }
      } else if (recorded && (!replicated || copies == CopyCheck::when_written)) {
        piece.xxh3 = t.xxh3;  // compared by the executor
      } else if (replicated) {
        // Copies are compared by their recorded checksums: each must also hold what its manifest says.
        const std::uint64_t actual =
            output::hash_file_range(file->fd(), path, piece.offset, info->bytes(), buffer);
        if (actual != t.xxh3) {
          problems.add(damage_message(path, name, true, actual, t.xxh3));
          continue;
        }
      }
      t.piece = piece;
      entries.mark_seen(e, ++seen);
    }
    file.reset();
    release_free_memory();  // the file's header, parsed (MBs), before the next one is
  }
  const auto refuse = [&](const Refused& kind, const std::string& one, const std::string& many,
                          const std::string& why) {
    if (kind.names.empty()) return;
    problems.add(
        fmt::format("{} {} (the first: {}), {}, which reshard does not rewrite: convert the checkpoint "
                    "again with the new --model-parallel (or convert --reverse this folder and "
                    "convert the result)",
                    kind.names.size(), kind.names.size() == 1 ? one : many, kind.first, why));
  };
  refuse(fused, "fused output", "fused outputs", "made by rules fuse: (each part is cut for its rank)");
  refuse(
      held_by_several, "tensor", "tensors",
      fmt::format("held whole by several ranks (rules units: fewer units than ranks; the first by {} ranks)",
                  held_by_several.replicas));
}

// One logical tensor from its pieces, checked: a split's pieces tile its dim in rank order with
// the same dtype and other dims; replicated copies are on every rank; an owned tensor on its owner.
// The pieces it keeps go to plan.pieces (reserved for every piece: what the spans point to stays).
std::optional<LogicalTensor> join(ReshardPlan& plan, std::span<const Entry* const> pieces,
                                  Diagnostics& problems) {
  const Entry& first = *pieces.front();
  const auto recorded =
      std::find_if(pieces.begin(), pieces.end(), [](const Entry* s) { return s->origin != kNoOrigin; });
  LogicalTensor logical{first.name,
                        first.dtype,
                        first.shape,
                        first.placement,
                        {},
                        {},
                        recorded == pieces.end() ? kNoOrigin : (*recorded)->origin};
  const std::size_t start = plan.pieces.size();
  const auto keep = [&](const Piece& piece) { plan.pieces.push_back(piece); };
  const auto kept = [&](std::size_t from) {
    return std::span<const Piece>(plan.pieces.data() + from, plan.pieces.size() - from);
  };
  // What was kept goes again when the tensor is refused.
  const auto refused = [&] {
    plan.pieces.resize(start);
    return std::optional<LogicalTensor>();
  };
  const std::uint64_t mp = plan.from_model_parallel;
  for (const Entry* each : pieces) {
    const Entry& s = *each;
    const bool same_dims = [&] {
      if (s.shape.size() != first.shape.size()) return false;
      for (std::size_t d = 0; d < s.shape.size(); ++d) {
        if (static_cast<int>(d) != first.placement.dim && s.shape[d] != first.shape[d]) return false;
      }
      return true;
    }();
    if (s.dtype != first.dtype || !same_dims || s.placement.kind != first.placement.kind ||
        s.placement.dim != first.placement.dim || s.size != first.size ||
        s.placement.count != first.placement.count) {
      problems.add(fmt::format("{}: its pieces disagree: {} {}{} {} in {}, {} {}{} {} in {}", logical.name,
                               st::dtype_name(first.dtype), st::shape_text(first.shape), "",
                               kind_text(first.placement), plan.old_files[first.piece.file].file,
                               st::dtype_name(s.dtype), st::shape_text(s.shape), "", kind_text(s.placement),
                               plan.old_files[s.piece.file].file));
      return refused();
    }
  }
  switch (first.placement.kind) {
    case Kind::split: {
      const auto d = static_cast<std::size_t>(first.placement.dim);
      const std::uint64_t replicas = std::max<std::uint64_t>(1, first.placement.replicas);
      std::uint64_t next = 0;
      for (std::size_t r = 0; r < pieces.size(); ++r) {
        const Entry& s = *pieces[r];
        if (r % replicas != 0 && plan.old_files[s.piece.file].rank == r) {
          // Ranks holding one range (Parts::gather): each the same bytes as the first of them.
          const Entry& held = *pieces[r - r % replicas];
          if (s.piece.begin != held.piece.begin || s.piece.end != held.piece.end || s.xxh3 != held.xxh3) {
            problems.add(fmt::format(
                "{}: rank {} holds [{}, {}) of dim {} with xxh3 {}, rank {} [{}, {}) with xxh3 {}: the ranks "
                "holding one range must hold the same bytes",
                logical.name, r, s.piece.begin, s.piece.end, d, output::xxh3_hex(s.xxh3), r - r % replicas,
                held.piece.begin, held.piece.end, output::xxh3_hex(held.xxh3)));
            return refused();
          }
          continue;
        }
        if (s.piece.begin != next || plan.old_files[s.piece.file].rank != r) {
          problems.add(fmt::format("{}: rank {} holds [{}, {}) of dim {}, expected [{}, ...)", logical.name,
                                   plan.old_files[s.piece.file].rank, s.piece.begin, s.piece.end, d, next));
          return refused();
        }
        next = s.piece.end;
        keep(s.piece);
      }
      if (pieces.size() != mp || next != first.size) {
        problems.add(fmt::format("{}: its pieces cover {} of {} entries of dim {} ({} of {} ranks)",
                                 logical.name, next, first.size, d, pieces.size(), mp));
        return refused();
      }
      logical.shape[d] = first.size;
      logical.pieces = kept(start);
      return logical;
    }
    case Kind::replicated: {
      if (pieces.size() != mp) {
        problems.add(fmt::format("{}: replicated, but on {} of {} ranks", logical.name, pieces.size(), mp));
        return refused();
      }
      for (const Entry* s : pieces) {
        if (s->xxh3 != first.xxh3) {
          problems.add(fmt::format("{}: replicated copies differ (xxh3 {} in {}, {} in {})", logical.name,
                                   output::xxh3_hex(first.xxh3), plan.old_files[first.piece.file].file,
                                   output::xxh3_hex(s->xxh3), plan.old_files[s->piece.file].file));
          return refused();
        }
      }
      keep(first.piece);
      logical.pieces = kept(start);
      // Copies whose checksums are still to compare (CopyCheck::when_written): the executor's.
      if (first.piece.xxh3) {
        for (std::size_t r = 1; r < pieces.size(); ++r) keep(pieces[r]->piece);
        logical.copies = kept(start + 1);
      }
      return logical;
    }
    case Kind::owned: {
      const std::uint64_t count = first.placement.count;
      const std::uint64_t owner = count % mp == 0 ? plan::owner_rank(first.placement.index, count, mp) : mp;
      if (pieces.size() != 1 || plan.old_files[first.piece.file].rank != owner) {
        problems.add(
            fmt::format("{}: owned ({} of {}), expected once on rank {} of mp={}, found on {} rank(s)",
                        logical.name, first.placement.index, count, owner, mp, pieces.size()));
        return refused();
      }
      keep(first.piece);
      logical.pieces = kept(start);
      return logical;
    }
    case Kind::composite:
      break;  // refused as the manifest is read
  }
  return refused();
}

// The new layout: each logical tensor cut for `mp`, every impossible cut reported.
void cut_for(ReshardPlan& plan, const std::string& pattern, Diagnostics& problems) {
  const std::uint64_t mp = plan.model_parallel;
  plan.outputs.resize(mp);
  for (std::uint64_t rank = 0; rank < mp; ++rank)
    plan.outputs[rank] = {rank, rules::expand_output_file(pattern, rank, mp), {}, 0};
  const auto add = [&](std::uint64_t rank, std::size_t index, const st::Shape& shape, std::uint64_t begin,
                       std::uint64_t end) {
    const auto bytes = st::byte_size(plan.logical[index].dtype, shape);
    if (!bytes) {
      problems.add(fmt::format("{}: {}{} is not a whole number of bytes", plan.logical[index].name,
                               st::dtype_name(plan.logical[index].dtype), st::shape_text(shape)));
      return;
    }
    NewFile& out = plan.outputs[rank];
    out.tensors.push_back({index, begin, end, *bytes});
    out.bytes += *bytes;
    plan.output_bytes += *bytes;
  };
  // Each file's tensors counted first, so that its list is allocated once and exactly.
  std::vector<std::size_t> counts(mp, 0);
  for (const LogicalTensor& t : plan.logical) {
    const plan::Placement& p = t.placement;
    if (p.kind != Kind::owned) {
      for (std::size_t& n : counts) ++n;  // split or replicated: on every rank
    } else if (p.count % mp == 0) {
      ++counts[plan::owner_rank(p.index, p.count, mp)];
    }
  }
  for (std::uint64_t rank = 0; rank < mp; ++rank) plan.outputs[rank].tensors.reserve(counts[rank]);
  // Owned tensors whose scope's count mp does not divide, by count: reported once per count.
  std::map<std::uint64_t, std::vector<std::size_t>> unspread;
  for (std::size_t i = 0; i < plan.logical.size(); ++i) {
    const LogicalTensor& t = plan.logical[i];
    const plan::Placement& p = t.placement;
    if (p.kind == Kind::replicated) {
      for (std::uint64_t rank = 0; rank < mp; ++rank) add(rank, i, t.shape, 0, 0);
    } else if (p.kind == Kind::owned) {
      if (p.count % mp != 0) {
        unspread[p.count].push_back(i);
        continue;
      }
      add(plan::owner_rank(p.index, p.count, mp), i, t.shape, 0, 0);
    } else {
      const auto d = static_cast<std::size_t>(p.dim);
      const std::uint64_t size = t.shape[d];
      if (size % mp != 0 || (size / mp) % p.unit != 0) {
        problems.add(fmt::format(
            "{}: {} entries of dim {} cannot be split over mp={} (shape {}{}{})", t.name, size, d, mp,
            st::shape_text(t.shape),
            size % mp != 0 ? fmt::format(": {} is not a multiple of {}", size, mp) : "",
            size % mp == 0 ? fmt::format(": {} per rank cuts units of {}", size / mp, p.unit) : ""));
        continue;
      }
      for (std::uint64_t rank = 0; rank < mp; ++rank) {
        const plan::SplitRange range = plan::split_range(size, rank, mp);
        st::Shape shape = t.shape;
        shape[d] = range.end - range.begin;
        add(rank, i, shape, range.begin, range.end);
      }
    }
  }
  for (const auto& [count, tensors] : unspread) {
    const LogicalTensor& first = plan.logical[tensors.front()];
    if (tensors.size() == 1) {
      problems.add(fmt::format("{}: owned ({} of {}): {} cannot be spread over mp={}", first.name,
                               first.placement.index, count, count, mp));
      continue;
    }
    problems.add(fmt::format(
        "{} owned tensors cannot be spread over mp={}: their scope counts {}, not a multiple of {} "
        "(e.g. {}: owned ({} of {}))",
        tensors.size(), mp, count, mp, first.name, first.placement.index, count));
  }
}

}  // namespace

namespace {

// A folder whose every tensor is whole in one of its files (mp 1, a mirrored output, Hugging Face's
// layout), read for plan_whole_tensors: its manifest complete with a cut for every tensor, each name
// once; each tensor its own logical tensor, made of its one piece.
void check_whole_manifest(const std::optional<output::Manifest>& manifest, const Entries& entries,
                          const std::string& where) {
  if (!manifest) throw Error(ErrorKind::input, fmt::format("{}: missing", where));
  if (!manifest->complete) {
    throw Error(ErrorKind::input, fmt::format("{}: incomplete (\"complete\": false): the conversion that "
                                              "wrote the folder did not finish; finish it (convert --resume) "
                                              "first",
                                              where));
  }
  if (manifest->outputs.empty())
    throw Error(ErrorKind::input, fmt::format("{}: lists no output file", where));
  for (std::size_t i = 0; i < entries.outputs(); ++i) {
    for (const std::uint32_t e : entries.of_output(i)) {
      const Entry& t = entries[e];
      if (!t.has_cut) {
        throw Error(ErrorKind::input, fmt::format("{}: {} in {} has no recorded cut (written before manifest "
                                                  "version 3)",
                                                  where, t.name, manifest->outputs[i].file));
      }
    }
  }
}

std::optional<LogicalTensor> join_whole(ReshardPlan& plan, std::span<const Entry* const> pieces,
                                        Diagnostics& problems) {
  const Entry& first = *pieces.front();
  if (pieces.size() != 1) {
    problems.add(fmt::format("{}: in {} files ({} and {}), where every tensor is whole in one", first.name,
                             pieces.size(), plan.old_files[first.piece.file].file,
                             plan.old_files[pieces[1]->piece.file].file));
    return std::nullopt;
  }
  Piece piece = first.piece;
  piece.begin = 0;
  piece.end = first.shape.empty() ? 0 : first.shape[0];
  plan.pieces.push_back(piece);
  return LogicalTensor{first.name, first.dtype, first.shape, plan::Placement{}, {&plan.pieces.back(), 1},
                       {},         first.origin};
}

// Each name's pieces (in the order seen) joined into its logical tensor, in name order; each block of
// entries goes once its pieces have joined.
void join_all(ReshardPlan& plan, Entries& entries, bool whole, Diagnostics& problems) {
  std::vector<std::uint32_t> order = entries.pieces();
  // By name, and each name's pieces in the order seen (file by file).
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    const Entry& x = entries[a];
    const Entry& y = entries[b];
    const int c = x.name.view().compare(y.name.view());
    return c != 0 ? c < 0 : x.seen < y.seen;
  });
  std::size_t names = 0;
  for (std::size_t k = 0; k < order.size(); ++k) {
    if (k == 0 || entries[order[k]].name.view() != entries[order[k - 1]].name.view()) ++names;
  }
  plan.logical.reserve(names);
  plan.pieces.reserve(order.size());
  std::vector<const Entry*> group;
  for (std::size_t k = 0; k < order.size();) {
    std::size_t next = k;
    group.clear();
    const std::string_view name = entries[order[k]].name.view();
    for (; next < order.size() && entries[order[next]].name.view() == name; ++next)
      group.push_back(&entries[order[next]]);
    std::optional<LogicalTensor> logical =
        whole ? join_whole(plan, group, problems) : join(plan, group, problems);
    if (logical) plan.logical.push_back(std::move(*logical));
    for (; k < next; ++k) entries.joined(order[k]);
  }
}

enum class Reading { rank_files, whole_tensors };

// `manifest_of` reads the folder's manifest (plan.from), its tensor entries into `entries` (their
// names and origins into the plan's lists).
ReshardPlan plan_from(
    const std::string& from, std::uint64_t model_parallel,
    const std::function<std::optional<output::Manifest>(ReshardPlan&, Entries&)>& manifest_of,
    const std::string& manifest_name, CopyCheck copies, OutsideLinks links,
    Reading reading = Reading::rank_files, Parts parts = Parts::refuse) {
  if (model_parallel == 0 || model_parallel > plan::kMaxModelParallel) {
    throw Error(ErrorKind::usage, fmt::format("model parallelism must be between 1 and {}, not {}",
                                              plan::kMaxModelParallel, model_parallel));
  }
  std::error_code ec;
  if (!fs::is_directory(from, ec)) throw Error(ErrorKind::input, fmt::format("{}: not a folder", from));
  ReshardPlan plan;
  plan.from = fs::absolute(from).lexically_normal().string();
  plan.model_parallel = model_parallel;
  plan.outside_links = links;
  Entries entries;
  std::optional<output::Manifest> manifest = manifest_of(plan, entries);
  if (manifest)
    entries.resize_outputs(manifest->outputs.size());  // an entry listing no tensor: none handed over
  const std::string where =
      manifest_name.empty() ? plan.from : (fs::path(plan.from) / manifest_name).string();
  if (reading == Reading::whole_tensors) {
    check_whole_manifest(manifest, entries, where);
    plan.from_model_parallel = manifest->outputs.size();
  } else {
    check_old_manifest(manifest, entries, where, plan.from_model_parallel);
  }
  plan.from_manifest = std::move(*manifest);
  Diagnostics problems(ErrorKind::input);
  check_no_stray_rank_files(plan, problems);
  read_old_files(plan, entries, !manifest_name.empty(), copies, parts, problems);
  // A damaged file would make every tensor it holds look incomplete: its own problems suffice.
  const std::string summary =
      parts == Parts::gather ? fmt::format("cannot reverse {} (mp={})", plan.from, plan.from_model_parallel)
                             : fmt::format("cannot reshard {} (mp={}) for mp={}", plan.from,
                                           plan.from_model_parallel, model_parallel);
  problems.check(summary);
  join_all(plan, entries, reading == Reading::whole_tensors, problems);
  entries = Entries();
  // The entries' blocks, freed as their pieces joined, leave the heap's middle: given back here.
  release_free_memory();
  for (const output::ManifestSideFile& side : plan.from_manifest.side_files) {
    if (!fs::is_regular_file(fs::path(plan.from) / side.file, ec)) {
      problems.add(fmt::format("{}: side file missing", (fs::path(plan.from) / side.file).string()));
    } else {
      try {
        check_inside_folder(plan.from, side.file, links);
      } catch (const Error& e) {
        problems.add(e.what());
      }
    }
    plan.side_files.push_back(side.file);
  }
  if (problems.empty() && reading == Reading::whole_tensors) {
    // One new file of every tensor whole (its name is the caller's to choose).
    NewFile whole{0, "", {}, 0};
    for (std::size_t i = 0; i < plan.logical.size(); ++i) {
      const LogicalTensor& t = plan.logical[i];
      whole.tensors.push_back({i, 0, t.pieces.front().end, t.pieces.front().bytes});
      whole.bytes += t.pieces.front().bytes;
    }
    plan.output_bytes = whole.bytes;
    plan.outputs.push_back(std::move(whole));
  } else if (problems.empty()) {
    cut_for(plan, plan.from_manifest.rules.output_file, problems);
  }
  problems.check(summary);
  return plan;
}

}  // namespace

st::Shape shape_of(const ReshardPlan& plan, const NewTensor& tensor) {
  const LogicalTensor& logical = plan.logical[tensor.logical];
  st::Shape shape = logical.shape;
  if (logical.placement.kind == Kind::split)
    shape[static_cast<std::size_t>(logical.placement.dim)] = tensor.end - tensor.begin;
  return shape;
}

std::optional<output::TensorOrigin> origin_of(const ReshardPlan& plan, const LogicalTensor& tensor) {
  if (tensor.origin == kNoOrigin) return std::nullopt;
  const Origin& o = plan.origins[tensor.origin];
  return output::TensorOrigin{
      o.name.str(), o.dtype, st::Shape(o.shape), o.rows, plan.origin_texts[o.irreversible], o.within};
}

ReshardPlan plan_reshard(const std::string& from, std::uint64_t model_parallel, CopyCheck copies,
                         OutsideLinks links) {
  // The entries read a tensor at a time, never all of them as the manifest's objects.
  const auto read = [](ReshardPlan& plan, Entries& entries) {
    std::optional<OriginTable> origins(std::in_place, plan);
    const auto take = [&](std::size_t output, output::ManifestTensor&& t) {
      entries.add(output, entry_of(plan, *origins, std::move(t), true));
    };
    output::TensorVisitor visitor;
    visitor.tensor = [&](std::size_t output, const std::string&, output::ManifestTensor&& t) {
      take(output, std::move(t));
    };
    visitor.restart = [&] {
      entries = Entries();
      plan.names = std::make_shared<plan::NameArena>();
      plan.origins.clear();
      plan.origin_texts.clear();
      origins.emplace(plan);
    };
    std::optional<output::Manifest> manifest = output::read_manifest(plan.from, visitor);
    // Tensors left in their entries (a file whose version comes after its outputs, as a JSON
    // library sorting keys writes it, is read with them) follow those handed over.
    if (manifest) {
      for (std::size_t i = 0; i < manifest->outputs.size(); ++i) {
        for (output::ManifestTensor& t : manifest->outputs[i].tensors) take(i, std::move(t));
        std::vector<output::ManifestTensor>().swap(manifest->outputs[i].tensors);
      }
    }
    return manifest;
  };
  return plan_from(from, model_parallel, read, output::kManifestFileName, copies, links);
}

ReshardPlan plan_reverse_gather(const std::string& from, bool whole, OutsideLinks links) {
  return plan_from(
      from, 1,
      [](ReshardPlan& plan, Entries& entries) {
        std::optional<output::Manifest> manifest = output::read_manifest(plan.from);
        if (manifest) entries_of(plan, *manifest, true, entries);
        return manifest;
      },
      output::kManifestFileName, CopyCheck::when_planned, links,
      whole ? Reading::whole_tensors : Reading::rank_files, Parts::gather);
}

ReshardPlan plan_reshard(const std::string& from, std::uint64_t model_parallel, const rules::Rules& rules,
                         const rules::Params& params, OutsideLinks links) {
  if (rules.output_layout() != rules::OutputLayout::per_rank) {
    throw Error(
        ErrorKind::usage,
        fmt::format("the rules {} write {}, not rank files: reshard reads rank files (rules with "
                    "output: {{file: PATTERN}})",
                    rules.name(),
                    rules.output_layout() == rules::OutputLayout::hf ? "Hugging Face's layout"
                                                                     : "the input's files (mirrored)"));
  }
  return plan_from(
      from, model_parallel,
      [&](ReshardPlan& plan, Entries& entries) {
        output::Manifest manifest = manifest_from_rules(plan.from, rules, params, links);
        entries_of(plan, manifest, false, entries);
        return std::optional(std::move(manifest));
      },
      "", CopyCheck::when_planned, links);
}

}  // namespace shardwise::reshard
