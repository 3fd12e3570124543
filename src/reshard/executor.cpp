// Executing a reshard through the output run (output/output_run.hpp: --ranks, --distributed,
// --resume, the folder's lock, the manifest): the new files are outlined as a plan::Plan, and
// their bytes gathered from the old pieces, hashed and written in order.
#include <shardwise/reshard/reshard.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <future>
#include <iterator>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/output/output_run.hpp>

#include <shardwise/core/io.hpp>
#include <shardwise/core/parallel.hpp>
#include "reshard/file_sink.hpp"
#include "reshard/gather.hpp"
#include "reshard/piece_check.hpp"

namespace shardwise::reshard {

namespace fs = std::filesystem;

namespace {

// A new file as a plan::OutputFile, its tensors listed (names, dtypes, shapes, cuts).
plan::OutputFile outlined_file(const ReshardPlan& plan, const NewFile& file) {
  plan::OutputFile out{file.rank, file.file, {}, file.bytes};
  out.tensors.reserve(file.tensors.size());  // exactly: at Pro's count, a 9 MB vector per file
  for (const NewTensor& t : file.tensors) {
    const LogicalTensor& logical = plan.logical[t.logical];
    plan::PlannedTensor planned;
    planned.name = logical.name;  // borrowed, as the logical tensor's
    planned.dtype = logical.dtype;
    planned.shape = shape_of(plan, t);
    planned.bytes = t.bytes;
    planned.placement = logical.placement;
    out.tensors.push_back(std::move(planned));
  }
  return out;
}

// The new files as a plan::Plan, as far as convert's run reads one: the files without their tensor
// lists (each made while its file is laid out and written, or compared with another run's record,
// then dropped), the side files, and the old rank files as its inputs.
plan::Plan outline_of(const ReshardPlan& plan) {
  plan::Plan outline;
  outline.model_parallel = plan.model_parallel;
  outline.params = plan.from_manifest.params;
  // A choice recorded by its word: index 0 of a list of that word alone.
  for (const auto& [name, word] : plan.from_manifest.choices) {
    outline.params[name] = 0;
    outline.param_choices[name] = {word};
  }
  outline.params["mp"] = plan.model_parallel;
  outline.rules_name = plan.from_manifest.rules.name;
  outline.input_root = plan.from;
  outline.name_arena = plan.names;  // the tensors' names are the logical tensors' (borrowed)
  outline.outside_links = plan.outside_links;
  for (const OldFile& old : plan.old_files) {
    outline.input_files.push_back(old.path);
    outline.input_identities.push_back(old.identity);
  }
  outline.outputs.reserve(plan.outputs.size());
  for (const NewFile& file : plan.outputs) {
    outline.outputs.push_back(plan::OutputFile{file.rank, file.file, {}, file.bytes});
  }
  outline.side_files = plan.side_files;
  return outline;
}

// The layout of a new file (as output::layout_of lays out its outlined file), from the plan.
st::FileLayout layout_of(const ReshardPlan& plan, const NewFile& file) {
  std::vector<st::OutputTensor> tensors;
  tensors.reserve(file.tensors.size());
  for (const NewTensor& t : file.tensors) {
    const LogicalTensor& logical = plan.logical[t.logical];
    tensors.push_back({logical.name.str(), logical.dtype, shape_of(plan, t)});
  }
  return st::layout_file(tensors);
}

// A new file's manifest entry: its tensors' names, checksums and cuts, and their origins as the old
// manifest records them (`convert --reverse`). Made a tensor at a time from the plan.
output::ManifestOutput entry_of(const ReshardPlan& plan, const NewFile& file, const FileSink& sink) {
  output::ManifestOutput entry = sink.entry();
  entry.tensors.resize(file.tensors.size());
  for (std::size_t i = 0; i < file.tensors.size(); ++i) {
    const NewTensor& t = file.tensors[i];
    const LogicalTensor& logical = plan.logical[t.logical];
    plan::PlannedTensor planned;
    planned.name = logical.name;
    planned.dtype = logical.dtype;
    planned.shape = shape_of(plan, t);
    planned.bytes = t.bytes;
    planned.placement = logical.placement;
    output::ManifestTensor& m = entry.tensors[i];
    m.name = logical.name.str();
    m.cut = output::cut_of(planned, file.rank, plan.model_parallel);
    m.origin = origin_of(plan, logical);
  }
  return entry;
}

// The new manifest before any file is written: the old one's rules, original input and parameters
// (mp the new one), the new files without checksums.
output::Manifest planned_manifest(const ReshardPlan& plan) {
  output::Manifest m;
  m.rules = plan.from_manifest.rules;
  // The original checkpoint's, carried over: the new files are made from it as much as the old ones.
  m.input_headers_xxh3 = plan.from_manifest.input_headers_xxh3;
  m.inputs = plan.from_manifest.inputs;
  m.params = plan.from_manifest.params;
  m.choices = plan.from_manifest.choices;
  m.skipped = plan.from_manifest.skipped;
  m.origins = plan.from_manifest.origins;  // carried to the new entries (write_files)
  m.params["mp"] = plan.model_parallel;
  for (const NewFile& f : plan.outputs) m.outputs.push_back({f.rank, f.file, 0, 0, {}});
  for (const std::string& side : plan.side_files) m.side_files.push_back({side, 0, false});
  return m;
}

// How far a file's gathering asks the kernel to read ahead of it (at least the next tensor).
constexpr std::uint64_t kReadAhead = 64 << 20;
// The most a writer reads its pieces' rows through at once (gather's scratch), beside its blocks.
constexpr std::size_t kScratchBytes = 1 << 20;
// The most one piece of advice to the kernel covers (as convert drops its inputs: 8 MiB chunks).
constexpr std::uint64_t kAdviceBytes = 8 << 20;

// Advice about ranges of the old files (io::will_need, io::drop_cached), ranges that follow one
// another in a file given in one call of up to kAdviceBytes: new tensors follow their old pieces'
// order within each old file, and at Pro's tensor count a call per piece (240,000, most of them
// a few KB) costs more system time than the advice saves. What is advised is the same; a range
// is advised once the next one does not continue it, it is kAdviceBytes long, or flush().
class Advice {
 public:
  using Call = void (*)(int fd, std::uint64_t offset, std::uint64_t length);
  Advice(const std::vector<io::ReadOnlyFile>& inputs, Call call)
      : inputs_(inputs), call_(call), pending_(inputs.size()) {}
  Advice(const Advice&) = delete;
  Advice& operator=(const Advice&) = delete;
  ~Advice() { flush(); }

  void add(std::size_t file, std::uint64_t offset, std::uint64_t length) {
    Range& r = pending_[file];
    if (r.length != 0 && offset == r.offset + r.length) {
      r.length += length;
    } else {
      give(file);
      r = {offset, length};
    }
    if (r.length >= kAdviceBytes) give(file);
  }
  void flush() {
    for (std::size_t file = 0; file < pending_.size(); ++file) give(file);
  }

 private:
  struct Range {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };
  void give(std::size_t file) {
    Range& r = pending_[file];
    if (r.length != 0) call_(inputs_[file].fd(), r.offset, r.length);
    r.length = 0;
  }

  const std::vector<io::ReadOnlyFile>& inputs_;
  Call call_;
  std::vector<Range> pending_;  // per old file
};

// Asks the kernel to read the old pieces of `next` while the tensors before it are gathered: a
// cold run's reads then overlap the gathering, hashing and writing instead of waiting for each.
void will_need(const ReshardPlan& plan, const NewTensor& next, Advice& advice) {
  const LogicalTensor& logical = plan.logical[next.logical];
  for (const PieceRead& read : pieces_read(plan, next)) {
    const Piece& p = logical.pieces[read.piece];
    advice.add(p.file, p.offset, p.bytes);
  }
}

// Drops from the page cache the old pieces `tensor` read whole that no other new tensor reads (a
// split piece read whole lies within one new tensor; an owned piece has one new owner; the
// replicated copy read is read by every new file).
void drop_read(const ReshardPlan& plan, const NewTensor& tensor, Advice& advice) {
  const LogicalTensor& logical = plan.logical[tensor.logical];
  if (logical.placement.kind == plan::Placement::Kind::replicated) return;
  for (const PieceRead& read : pieces_read(plan, tensor)) {
    if (!read.whole) continue;
    const Piece& p = logical.pieces[read.piece];
    advice.add(p.file, p.offset, p.bytes);
  }
}

// Gathers one new file into `sink`, hashing the old pieces it reads whole; appends those whose
// bytes differ from their recorded checksums to `damaged`. With `drop`, the pieces read for the
// last time leave the page cache.
void gather_file(const ReshardPlan& plan, const output::FileWork& w,
                 const std::vector<io::ReadOnlyFile>& inputs, std::span<std::byte> scratch, bool drop,
                 FileSink& sink, std::vector<Damage>& damaged) {
  const NewFile& file = plan.outputs[w.planned->rank];
  const std::vector<std::size_t>& order = w.layout.order;
  Advice needed(inputs, io::will_need);
  Advice dropped(inputs, io::drop_cached);
  std::size_t advised = 0;  // tensors (in order) whose pieces were asked for
  std::uint64_t ahead = 0;  // bytes of those after the current one
  for (std::size_t k = 0; k < order.size(); ++k) {
    const std::size_t index = order[k];
    const NewTensor& t = file.tensors[index];
    if (advised == k) {
      will_need(plan, t, needed);
      ++advised;
    } else {
      ahead -= t.bytes;
    }
    while (advised < order.size() && (advised == k + 1 || ahead < kReadAhead)) {
      will_need(plan, file.tensors[order[advised]], needed);
      ahead += file.tensors[order[advised]].bytes;
      ++advised;
    }
    // Every tensor asked for: nothing will continue the ranges held back, so they go now, not when
    // `needed` is destroyed (after `dropped` has dropped what they ask the kernel to read).
    if (advised == order.size()) needed.flush();
    const std::uint64_t before = sink.gathered();
    PieceHashes pieces(plan, t);
    gather(
        plan, t, inputs, sink.block_bytes(), scratch, [&](std::size_t n) { return sink.reserve(n); },
        pieces.hook());
    pieces.check(damaged);
    if (drop) drop_read(plan, t, dropped);
    if (sink.gathered() - before != t.bytes || w.layout.offset[index] != w.layout.data_start + before) {
      throw Error(ErrorKind::io,
                  fmt::format("{}: {} gathered {} bytes at {}, laid out as {} at {}", file.file,
                              plan.logical[t.logical].name, sink.gathered() - before, before, t.bytes,
                              w.layout.offset[index]));
    }
    sink.end_tensor(index);
  }
}

// The replicated copies no file reads, hashed on a thread of their own; when the writing ends
// early (an error), told to stop, and waited for.
struct CopyHashes {
  std::atomic<bool> stop = false;
  std::shared_future<std::vector<Damage>> result;
  CopyHashes() = default;
  CopyHashes(const CopyHashes&) = delete;
  CopyHashes& operator=(const CopyHashes&) = delete;
  ~CopyHashes() {
    stop = true;
    if (result.valid()) result.wait();
  }
};

// Writes `files`: one thread per file, each with a second thread hashing and writing behind it when
// there are threads to spare (one file and two threads: both busy), and one more thread hashing the
// replicated copies no file reads. A file that read a damaged old piece is not committed (its
// temporary is removed); the others are, and then the run fails naming every damaged piece (so
// --resume keeps the files that were sound). Every file holds every replicated tensor: none is
// committed before all copies are known sound, none when one is damaged.
void write_files(const ReshardPlan& plan, std::vector<output::FileWork>& files, unsigned threads,
                 std::size_t block_bytes, output::PageCache cache, output::Progress& progress,
                 const output::CommitHook& on_commit, const output::PreCommitCheck& before_commit) {
  const bool drop = cache == output::PageCache::drop;
  std::vector<io::ReadOnlyFile> inputs;
  for (const OldFile& old : plan.old_files) inputs.emplace_back(old.path);
  check_pieces_up_front(plan, files, inputs, threads);
  if (files.empty()) return;
  CopyHashes copy_hashes;
  copy_hashes.result = std::async(std::launch::async, [&] {
                         return hash_copies(plan, inputs, 1, drop, &copy_hashes.stop);
                       }).share();
  std::mutex damaged_mutex;
  // Held by a writer while it lays its file out or makes its entry (each 15-25 MB at Pro's tensor
  // count): one of them at a time.
  std::mutex per_file_mutex;
  std::vector<Damage> damaged;
  std::size_t refused = 0;  // files not committed for having read a damaged piece (or a copy being damaged)
  const bool behind = threads >= 2 * files.size();
  const unsigned writers = behind ? static_cast<unsigned>(files.size()) : threads;
  run_parallel(files.size(), writers, [&](std::size_t f, unsigned) {
    if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
    // Where a split on a later dim reads its pieces' rows: a region of rows per read, however large
    // the blocks written (a smaller one reads fewer rows at a time). Not zeroed: untouched unless used.
    const std::size_t scratch_bytes = std::min(block_bytes, kScratchBytes);
    auto scratch_memory = std::make_unique_for_overwrite<std::byte[]>(scratch_bytes);
    const std::span<std::byte> scratch(scratch_memory.get(), scratch_bytes);
    // Laid out again (the run's layout keeps only the sizes), its header text dropped once hashed.
    output::FileWork w = files[f];
    const NewFile& file = plan.outputs[w.planned->rank];
    std::optional<st::OutputFile> out;
    std::optional<FileSink> sink;
    {
      std::lock_guard lock(per_file_mutex);
      w.layout = layout_of(plan, file);
      if (w.layout.data_start != files[f].layout.data_start ||
          w.layout.file_size != files[f].layout.file_size)
        throw std::logic_error(fmt::format("{}: laid out differently when opened", w.final_path));
      progress.set_current(w.planned->file);
      out.emplace(st::OutputFile::create(w.final_path, w.layout));
      sink.emplace(*out, w, block_bytes, behind ? FileSink::Mode::write_behind : FileSink::Mode::inline_write,
                   drop, progress);
      std::string().swap(w.layout.header);
      release_free_memory();
    }
    std::vector<Damage> read_damaged;
    gather_file(plan, w, inputs, scratch, drop, *sink, read_damaged);
    scratch_memory.reset();
    sink->finish();
    // Waits for the copies (each thread through its own future of them).
    const bool copies_sound = std::shared_future(copy_hashes.result).get().empty();
    if (!read_damaged.empty() || !copies_sound) {
      std::lock_guard lock(damaged_mutex);
      std::move(read_damaged.begin(), read_damaged.end(), std::back_inserter(damaged));
      ++refused;
      return;
    }
    if (before_commit) before_commit();
    out->commit();
    // One file's entry at a time, and no file laid out meanwhile.
    std::lock_guard lock(per_file_mutex);
    std::vector<std::size_t>().swap(w.layout.order);
    std::vector<std::uint64_t>().swap(w.layout.offset);
    std::vector<std::uint64_t>().swap(w.layout.bytes);
    release_free_memory();  // the file's buffers, before its entry takes their place
    output::ManifestOutput entry = entry_of(plan, file, *sink);
    if (on_commit) on_commit(std::move(entry));
  });
  const std::vector<Damage>& damaged_copies = copy_hashes.result.get();
  damaged.insert(damaged.end(), damaged_copies.begin(), damaged_copies.end());
  refuse_damage(
      plan, std::move(damaged),
      refused == files.size()
          ? fmt::format("None of the {} new files was written: replace the damaged rank files, then run "
                        "again with --resume.",
                        files.size())
          : fmt::format("{} of the {} new files read a damaged piece and were not written, the others were: "
                        "replace the damaged rank files, then run again with --resume to write the rest.",
                        refused, files.size()));
}

}  // namespace

ReshardSummary execute_reshard(const ReshardPlan& plan, const ReshardOptions& options) {
  const plan::Plan outline = outline_of(plan);
  output::OutputWriter writer;
  writer.planned = [&](const output::InputWatch&) { return planned_manifest(plan); };
  // Only each file's sizes are kept: its header (MBs at 100,000s of tensors) is laid out again when
  // the file is opened (write_files), not held for every file from the start.
  writer.layout = [&](std::span<const std::uint64_t> ranks, const std::string& out_dir) {
    std::vector<output::FileWork> files;
    for (const std::uint64_t rank : ranks) {
      output::FileWork w = output::lay_out_file(outlined_file(plan, plan.outputs[rank]), out_dir);
      w.planned = &outline.outputs[rank];
      std::string().swap(w.layout.header);
      std::vector<std::size_t>().swap(w.layout.order);
      std::vector<std::uint64_t>().swap(w.layout.offset);
      std::vector<std::uint64_t>().swap(w.layout.bytes);
      files.push_back(std::move(w));
    }
    release_free_memory();  // what laying the files out took, before the writing threads allocate
    return files;
  };
  // The run counts the tensors of the outline's lists: there are none, so they are counted here.
  std::size_t written_tensors = 0;
  // Blocks of options.piece_bytes, however small (the run's own choice is for convert's pieces).
  writer.write = [&](std::vector<output::FileWork>& files, unsigned threads, output::PageCache cache,
                     output::Progress& progress, const output::CommitHook& on_commit,
                     const output::PreCommitCheck& before_commit) {
    for (const output::FileWork& w : files) written_tensors += plan.outputs[w.planned->rank].tensors.size();
    write_files(plan, files, threads, std::max<std::size_t>(options.piece_bytes, 64), cache, progress,
                on_commit, before_commit);
  };
  writer.side_file_xxh3 = [&](const std::string& name) -> std::optional<std::uint64_t> {
    for (const output::ManifestSideFile& old : plan.from_manifest.side_files) {
      if (old.file == name) return old.xxh3;
    }
    return std::nullopt;
  };
  // Another run's record of a file (--resume, a partial run completing the manifest) is compared
  // with the file's list, made then.
  writer.tensor_list = [&](std::uint64_t rank) { return outlined_file(plan, plan.outputs[rank]); };
  ReshardSummary summary = output::run_outputs(outline, options.run, writer);
  summary.tensors = written_tensors;
  return summary;
}

}  // namespace shardwise::reshard
