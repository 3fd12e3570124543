// `convert --reverse` (reverse.hpp): the refusals read from the manifest, the layout of the
// original tensors in Hugging Face's shards, and the writing, each tensor gathered as a reshard to
// mp 1 gathers it and its rows put back head by head.

#include <shardwise/reshard/reverse.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/io.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/safetensors/hf_shards.hpp>
#include <shardwise/safetensors/writer.hpp>
#include <shardwise/transform/row_permutation.hpp>

#include "reshard/gather.hpp"
#include "reshard/piece_check.hpp"
#include "reshard/reshard_internal.hpp"

namespace shardwise::reshard {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";

std::string plural(std::uint64_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

// Every step of the conversion that the manifest says cannot be undone, one line per rule.
void refuse_irreversible(const output::Manifest& manifest, const std::string& from) {
  Diagnostics problems(ErrorKind::input);
  if (!manifest.origins) {
    problems.add(
        fmt::format("{}: its manifest does not record what each tensor was made from (written "
                    "before manifest version 5, or resharded from such a folder): convert the "
                    "checkpoint again with this version to reverse it",
                    from));
  }
  for (const output::ManifestSkip& skip : manifest.skipped) {
    problems.add(fmt::format("{} dropped by {} (the first: {}): a skipped tensor cannot be written back",
                             plural(skip.count, "tensor"), skip.rule, skip.first));
  }
  struct Seen {
    std::uint64_t count = 0;
    std::string first;
  };
  std::map<std::string, Seen> lossy;  // by what was done, which names the rule
  std::set<std::string> counted;      // a tensor split over ranks is one tensor
  const auto note = [&](const std::string& name, const std::optional<output::TensorOrigin>& origin) {
    if (!origin || origin->irreversible.empty() || !counted.insert(name).second) return;
    Seen& seen = lossy[origin->irreversible];
    if (seen.count++ == 0) seen.first = origin->name;
  };
  std::set<std::string> fused;  // fused outputs of a manifest that does not record their parts' origins
  for (const output::ManifestOutput& out : manifest.outputs) {
    for (const output::ManifestTensor& t : out.tensors) {
      note(t.name, t.origin);
      if (!t.cut || !t.cut->composite) continue;
      const output::CompositeCut& c = *t.cut->composite;
      for (std::size_t i = 0; i < c.parts.size() && i < c.origins.size(); ++i)
        note(c.parts[i].first, c.origins[i]);
      if (manifest.version < 6) fused.insert(t.name);
    }
  }
  if (!fused.empty()) {
    problems.add(
        fmt::format("{} made by fuse rules (the first: {}), recorded by manifest version {}, which "
                    "does not record their parts' origins: convert the checkpoint again with this "
                    "version to reverse it",
                    plural(fused.size(), "tensor"), *fused.begin(), manifest.version));
  }
  for (const auto& [what, seen] : lossy) {
    // Version 5 marked fused outputs and unfused chunks as not undone yet: said above, or here.
    if (manifest.version < 6 &&
        what.find("convert --reverse does not split fused outputs yet") != std::string::npos)
      continue;
    if (manifest.version < 6 &&
        what.find("convert --reverse does not join chunks yet") != std::string::npos) {
      problems.add(
          fmt::format("{} cut out by unfuse rules (the first: {}), recorded by manifest version {}, "
                      "which does not record the rows each chunk is: convert the checkpoint again "
                      "with this version to reverse it",
                      plural(seen.count, "tensor"), seen.first, manifest.version));
      continue;
    }
    problems.add(fmt::format("{} made by {} (the first: {}): the source cannot be computed back from it",
                             plural(seen.count, "tensor"), what, seen.first));
  }
  problems.check(
      fmt::format("cannot reverse {}: the conversion cannot be undone", from), 200,
      "Only a conversion that renames, cuts, fuses, unfuses, reinterprets and permutes rows can be "
      "reversed.");
}

// Each converted tensor's origin as the manifest records it (the first entry that has one), a
// fused output's parts' among them.
std::map<std::string, output::TensorOrigin> origins_of(const output::Manifest& manifest) {
  std::map<std::string, output::TensorOrigin> origins;
  for (const output::ManifestOutput& out : manifest.outputs) {
    for (const output::ManifestTensor& t : out.tensors) {
      if (t.origin) origins.try_emplace(t.name, *t.origin);
      if (!t.cut || !t.cut->composite) continue;
      const output::CompositeCut& c = *t.cut->composite;
      for (std::size_t i = 0; i < c.parts.size() && i < c.origins.size(); ++i)
        if (c.origins[i]) origins.try_emplace(c.parts[i].first, *c.origins[i]);
    }
  }
  return origins;
}

// The original tensor of a converted one and where the converted one goes in it, checked: the same
// bytes (a reinterpretation changes the dtype and last dim, not the bytes; a chunk is rows of the
// original), rows that make whole heads for a permutation.
std::optional<std::pair<ReversedTensor, ReversedPiece>> reversed(const LogicalTensor& logical,
                                                                 std::size_t index,
                                                                 const output::TensorOrigin* origin,
                                                                 Diagnostics& problems) {
  ReversedTensor t{logical.name, logical.dtype, logical.shape, 0, {}};
  if (origin != nullptr) {
    t.name = origin->name;
    t.dtype = origin->dtype;
    t.shape = origin->shape;
  }
  const auto bytes = st::byte_size(t.dtype, t.shape);
  const auto written = st::byte_size(logical.dtype, logical.shape);
  const std::uint64_t rows = t.shape.empty() ? 1 : t.shape[0];
  ReversedPiece piece{index, 0, rows, 0, written.value_or(0), std::nullopt};
  if (origin != nullptr && !origin->within.whole()) {
    piece.begin = origin->within.begin;
    piece.end = origin->within.end;
  }
  const std::uint64_t row_bytes = bytes && rows != 0 ? *bytes / rows : 0;
  const bool whole = piece.begin == 0 && piece.end == rows;
  if (!bytes || !written || piece.end > rows ||
      *written != (whole ? *bytes : (piece.end - piece.begin) * row_bytes)) {
    problems.add(fmt::format(
        "{}: written as {}{}, but the manifest says it was made from {}{} {}{}: not the same bytes",
        logical.name, st::dtype_name(logical.dtype), st::shape_text(logical.shape),
        whole ? "" : fmt::format("rows [{}, {}) of ", piece.begin, piece.end), t.name,
        st::dtype_name(t.dtype), st::shape_text(t.shape)));
    return std::nullopt;
  }
  t.bytes = *bytes;
  piece.offset = piece.begin * row_bytes;
  if (origin != nullptr && origin->rows) {
    const std::uint64_t heads = origin->rows->heads;
    const std::uint64_t own = piece.end - piece.begin;  // the rows permuted
    if (heads == 0 || own == 0 || t.shape.empty() || own % heads != 0 || own / heads % 2 != 0) {
      problems.add(fmt::format("{}: the manifest says its {} rows were permuted in {} heads", logical.name,
                               own, heads));
      return std::nullopt;
    }
    piece.undo = plan::RowPermutation{transform::inverse(origin->rows->to), heads, 0};
  }
  return std::pair(std::move(t), piece);
}

// The pieces of one original tensor, in row order, must cover its rows once: `from` names the
// converted tensor of each.
void check_covered(const ReversedTensor& t, const std::vector<std::string>& from, Diagnostics& problems) {
  const std::uint64_t rows = t.shape.empty() ? 1 : t.shape[0];
  std::uint64_t next = 0;
  for (std::size_t i = 0; i < t.from.size(); ++i) {
    const ReversedPiece& p = t.from[i];
    if (p.begin < next) {
      problems.add(
          fmt::format("{}: rows [{}, {}) of its {} written twice, as {} and as {}: which one is the "
                      "source cannot be told",
                      t.name, p.begin, std::min(next, p.end), rows, from[i - 1], from[i]));
      return;
    }
    if (p.begin > next) break;
    next = p.end;
  }
  if (next != rows) {
    problems.add(fmt::format("{}: rows [{}, {}) of its {} are in no converted tensor (its chunks: {})",
                             t.name, next, rows, rows, fmt::join(from, ", ")));
  }
}

}  // namespace

ReversePlan plan_reverse(const std::string& from, std::uint64_t max_shard_size, OutsideLinks links) {
  const std::optional<output::Manifest> manifest = output::read_manifest(from);
  if (!manifest) {
    throw Error(ErrorKind::input, fmt::format("{}: no {} in it: only a folder shardwise converted can be "
                                              "reversed",
                                              from, output::kManifestFileName));
  }
  refuse_irreversible(*manifest, from);
  ReversePlan plan;
  // Rank files are gathered as a reshard to mp 1 does; a folder whose every tensor is whole in one file
  // (mp 1, mirrored, Hugging Face's layout) has no ranks to gather.
  std::set<std::string> seen;
  bool whole = true;
  for (const output::ManifestOutput& out : manifest->outputs) {
    for (const output::ManifestTensor& t : out.tensors) whole = whole && seen.insert(t.name).second;
  }
  plan.gathered = plan_reverse_gather(from, whole, links);
  const std::map<std::string, output::TensorOrigin> origins = origins_of(plan.gathered.from_manifest);
  Diagnostics problems(ErrorKind::input);
  std::map<std::string, ReversedTensor> originals;  // by name, with every converted tensor written from it
  for (std::size_t i = 0; i < plan.gathered.logical.size(); ++i) {
    const LogicalTensor& logical = plan.gathered.logical[i];
    const auto origin = origins.find(logical.name);
    auto made = reversed(logical, i, origin == origins.end() ? nullptr : &origin->second, problems);
    if (!made) continue;
    auto& [t, piece] = *made;
    const auto [it, fresh] = originals.try_emplace(t.name, std::move(t));
    if (!fresh && (it->second.dtype != t.dtype || it->second.shape != t.shape)) {
      problems.add(
          fmt::format("{}: made from {} as {}{} and from {} as {}{}: which one is the source cannot be "
                      "told",
                      t.name, plan.gathered.logical[it->second.from.front().logical].name,
                      st::dtype_name(it->second.dtype), st::shape_text(it->second.shape), logical.name,
                      st::dtype_name(t.dtype), st::shape_text(t.shape)));
      continue;
    }
    it->second.from.push_back(piece);
  }
  for (auto& [name, t] : originals) {
    std::sort(t.from.begin(), t.from.end(),
              [](const ReversedPiece& a, const ReversedPiece& b) { return a.begin < b.begin; });
    std::vector<std::string> names;
    for (const ReversedPiece& p : t.from) names.push_back(plan.gathered.logical[p.logical].name);
    check_covered(t, names, problems);
    plan.tensors.push_back(std::move(t));
  }
  problems.check(fmt::format("cannot reverse {}", from));
  std::sort(plan.tensors.begin(), plan.tensors.end(), [](const ReversedTensor& a, const ReversedTensor& b) {
    return st::natural_name_less(a.name, b.name);
  });
  std::vector<std::uint64_t> sizes;
  for (const ReversedTensor& t : plan.tensors) sizes.push_back(t.bytes);
  const auto shards = st::split_into_shards(sizes, max_shard_size);
  const std::vector<std::string> names = st::hf_shard_file_names(shards.size());
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < shards.size(); ++s) {
    ReverseFile file{names[s], shards[s], 0};
    for (const std::size_t t : file.tensors) {
      file.bytes += plan.tensors[t].bytes;
      weight_map.emplace_back(plan.tensors[t].name, names[s]);
    }
    total += file.bytes;
    plan.files.push_back(std::move(file));
  }
  if (plan.files.empty()) plan.files.push_back({"model.safetensors", {}, 0});
  if (plan.files.size() > 1) plan.index = st::hf_index_json(std::move(weight_map), total);
  for (const std::string& side : plan.gathered.side_files) {
    // A mirrored conversion's rewritten index is not the checkpoint's: the reversal writes its own.
    if (side != kIndexName) plan.side_files.push_back(side);
  }
  return plan;
}

std::string format_reverse_text(const ReversePlan& plan) {
  std::map<std::string, std::string> fused_into;  // a part's name -> the fused output holding it
  for (const output::ManifestOutput& out : plan.gathered.from_manifest.outputs) {
    for (const output::ManifestTensor& t : out.tensors) {
      if (!t.cut || !t.cut->composite) continue;
      for (const auto& part : t.cut->composite->parts) fused_into.try_emplace(part.first, t.name);
    }
  }
  std::string text =
      fmt::format("reverse: {} -> {} ({}, {})\n", plan.gathered.from, plural(plan.files.size(), "file"),
                  plural(plan.tensors.size(), "tensor"), plan.gathered.from_manifest.rules.name);
  for (const ReverseFile& file : plan.files) {
    text += fmt::format("{} ({} bytes)\n", file.file, file.bytes);
    for (const std::size_t i : file.tensors) {
      const ReversedTensor& t = plan.tensors[i];
      text += fmt::format("  {} {}{} <-", t.name, st::dtype_name(t.dtype), st::shape_text(t.shape));
      for (std::size_t k = 0; k < t.from.size(); ++k) {
        const ReversedPiece& piece = t.from[k];
        const LogicalTensor& from = plan.gathered.logical[piece.logical];
        const bool chunk = t.from.size() > 1 || piece.end - piece.begin != (t.shape.empty() ? 1 : t.shape[0]);
        text += fmt::format("{} {}", k == 0 ? "" : " +", from.name == t.name && !chunk ? "=" : from.name);
        if (const auto in = fused_into.find(from.name); in != fused_into.end())
          text += fmt::format(" (a part of {})", in->second);
        if (chunk) text += fmt::format(" (rows {}:{})", piece.begin, piece.end);
        if (from.dtype != t.dtype)
          text += fmt::format(" ({} read as {})", st::dtype_name(from.dtype), st::dtype_name(t.dtype));
        if (piece.undo) {
          text +=
              fmt::format(", rows {} -> {} in {} heads",
                          piece.undo->to == transform::RopeOrder::half_split ? "interleaved" : "half_split",
                          piece.undo->to == transform::RopeOrder::half_split ? "half_split" : "interleaved",
                          piece.undo->heads);
        }
      }
      text += '\n';
    }
  }
  if (!plan.index.empty()) text += fmt::format("{} ({} bytes)\n", kIndexName, plan.index.size());
  for (const std::string& side : plan.side_files) text += fmt::format("{} (side file, copied)\n", side);
  return text;
}

namespace {

// Receives one converted tensor's gathered bytes in order (gather's Reserve) and writes them at its
// offset in the file, a permuted one a head at a time with its rows put back.
class TensorWriter {
 public:
  TensorWriter(st::OutputFile& out, std::uint64_t offset, const ReversedPiece& piece, std::size_t chunk)
      : out_(out), offset_(offset), staging_(chunk) {
    if (piece.undo) {
      undo_ = piece.undo;
      rows_ = piece.end - piece.begin;
      row_bytes_ = piece.bytes / rows_;
      head_rows_ = rows_ / undo_->heads;
      head_.resize(head_rows_ * row_bytes_);
      permuted_.resize(head_.size());
    }
  }

  std::span<std::byte> reserve(std::size_t n) {
    flush();
    if (n > staging_.size()) staging_.resize(n);
    pending_ = n;
    return std::span(staging_).first(n);
  }

  void finish() {
    flush();
    if (undo_ && filled_ != 0) throw std::logic_error("reverse: a head was gathered in part");
  }

 private:
  void flush() {
    const auto bytes = std::span(staging_).first(pending_);
    pending_ = 0;
    if (!undo_) {
      out_.write_at(offset_ + written_, bytes);
      written_ += bytes.size();
      return;
    }
    for (std::size_t pos = 0; pos < bytes.size();) {
      const std::size_t n = std::min(bytes.size() - pos, head_.size() - filled_);
      std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(pos), n,
                  head_.begin() + static_cast<std::ptrdiff_t>(filled_));
      filled_ += n;
      pos += n;
      if (filled_ == head_.size()) write_head();
    }
  }

  // Row r of the head written is the gathered row rope_source_row(undo, ...) of the same head.
  void write_head() {
    const std::uint64_t head = written_ / head_.size();
    for (std::uint64_t r = 0; r < head_rows_; ++r) {
      const std::uint64_t from =
          transform::rope_source_row(undo_->to, rows_, undo_->heads, head * head_rows_ + r) -
          head * head_rows_;
      std::copy_n(head_.begin() + static_cast<std::ptrdiff_t>(from * row_bytes_), row_bytes_,
                  permuted_.begin() + static_cast<std::ptrdiff_t>(r * row_bytes_));
    }
    out_.write_at(offset_ + written_, permuted_);
    written_ += head_.size();
    filled_ = 0;
  }

  st::OutputFile& out_;
  std::uint64_t offset_;
  std::vector<std::byte> staging_;
  std::size_t pending_ = 0;
  std::uint64_t written_ = 0;
  std::optional<plan::RowPermutation> undo_;
  std::uint64_t rows_ = 0;
  std::uint64_t row_bytes_ = 0;
  std::uint64_t head_rows_ = 0;
  std::vector<std::byte> head_;      // the gathered rows of the head being filled
  std::vector<std::byte> permuted_;  // the same rows in the order written
  std::size_t filled_ = 0;
};

// The output folder: never the converted folder or inside it; names the run writes that exist
// already are refused unless --force.
fs::path prepare_folder(const ReversePlan& plan, const ReverseOptions& options) {
  std::error_code ec;
  const fs::path in = fs::weakly_canonical(plan.gathered.from, ec);
  const fs::path out = fs::weakly_canonical(options.output_dir, ec);
  if (ec) throw Error(ErrorKind::io, fmt::format("cannot resolve {}: {}", options.output_dir, ec.message()));
  const auto [end, _] = std::mismatch(in.begin(), in.end(), out.begin(), out.end());
  if (end == in.end()) {
    throw Error(ErrorKind::io,
                fmt::format("the output folder {} is the converted folder or inside it: choose "
                            "another one",
                            options.output_dir));
  }
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw Error(ErrorKind::io,
                fmt::format("the output path {} exists and is not a folder", options.output_dir));
  fs::create_directories(out, ec);
  if (ec)
    throw Error(ErrorKind::io,
                fmt::format("cannot create the output folder {}: {}", options.output_dir, ec.message()));
  if (!options.force) {
    std::vector<std::string> names;
    for (const ReverseFile& f : plan.files) names.push_back(f.file);
    if (!plan.index.empty()) names.emplace_back(kIndexName);
    names.insert(names.end(), plan.side_files.begin(), plan.side_files.end());
    std::vector<std::string> present;
    for (const std::string& name : names)
      if (fs::exists(out / name, ec)) present.push_back(name);
    if (!present.empty()) {
      throw Error(ErrorKind::io, fmt::format("{} already holds {}; pass --force to overwrite",
                                             options.output_dir, fmt::join(present, ", ")));
    }
  }
  return out;
}

// A small file (the index, a side file) written whole through a temporary name.
void write_small_file(const fs::path& path, std::string_view content) {
  const fs::path temp = path.parent_path() / ("." + path.filename().string() + ".partial");
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    file.write(content.data(), static_cast<std::streamsize>(content.size()));
    file.flush();
    if (!file) throw Error(ErrorKind::io, fmt::format("cannot write {}", temp.string()));
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) {
    fs::remove(temp, ec);
    throw Error(ErrorKind::io, fmt::format("cannot rename {} to {}", temp.string(), path.string()));
  }
}

}  // namespace

ReverseSummary execute_reverse(const ReversePlan& plan, const ReverseOptions& options) {
  const fs::path out = prepare_folder(plan, options);
  const ReshardPlan& gathered = plan.gathered;
  std::vector<io::ReadOnlyFile> inputs;
  for (const OldFile& old : gathered.old_files) inputs.emplace_back(old.path);
  const std::vector<NewTensor>& whole = gathered.outputs.front().tensors;  // one per logical tensor
  std::vector<const NewTensor*> by_logical(gathered.logical.size(), nullptr);
  for (const NewTensor& t : whole) by_logical[t.logical] = &t;
  std::vector<std::byte> scratch(options.piece_bytes);
  std::vector<Damage> damaged;
  ReverseSummary summary;
  for (const ReverseFile& file : plan.files) {
    std::vector<st::OutputTensor> heads;
    for (const std::size_t i : file.tensors)
      heads.push_back({plan.tensors[i].name, plan.tensors[i].dtype, plan.tensors[i].shape});
    const st::FileLayout layout = st::layout_file(heads);
    st::OutputFile written = st::OutputFile::create((out / file.file).string(), layout);
    const std::size_t before = damaged.size();
    for (std::size_t k = 0; k < file.tensors.size(); ++k) {
      for (const ReversedPiece& piece : plan.tensors[file.tensors[k]].from) {
        const NewTensor& source = *by_logical[piece.logical];
        TensorWriter writer(written, layout.offset[k] + piece.offset, piece, options.piece_bytes);
        PieceHashes hashes(gathered, source);
        gather(
            gathered, source, inputs, options.piece_bytes, scratch,
            [&writer](std::size_t n) { return writer.reserve(n); }, hashes.hook());
        writer.finish();
        hashes.check(damaged);
      }
    }
    if (damaged.size() != before) continue;  // not committed: the temporary goes with `written`
    written.commit();
    ++summary.files;
    summary.tensors += file.tensors.size();
    summary.bytes += layout.file_size;
  }
  refuse_damage(gathered, std::move(damaged), "the files made from them were not written");
  if (!plan.index.empty()) write_small_file(out / kIndexName, plan.index);
  for (const std::string& side : plan.side_files) {
    const std::string path = (fs::path(gathered.from) / side).string();
    const std::string content =
        io::read_regular_file(path, std::uint64_t{1} << 32, ErrorKind::input, "a side file");
    for (const output::ManifestSideFile& recorded : gathered.from_manifest.side_files) {
      if (recorded.file == side && output::xxh3(content) != recorded.xxh3) {
        throw Error(
            ErrorKind::input,
            fmt::format("{}: has xxh3 {}, the manifest says {} (the file was damaged or "
                        "replaced)",
                        path, output::xxh3_hex(output::xxh3(content)), output::xxh3_hex(recorded.xxh3)));
      }
    }
    write_small_file(out / side, content);
  }
  return summary;
}

}  // namespace shardwise::reshard
