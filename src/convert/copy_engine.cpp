#include "convert/copy_engine.hpp"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include <shardwise/convert/composite_stream.hpp>
#include <shardwise/convert/tensor_stream.hpp>
#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>
#include <shardwise/output/checksum.hpp>

#include <shardwise/core/io.hpp>

namespace shardwise::convert {

// The output run's types, which the engine uses throughout.
using output::CommitHook;
using output::FileWork;
using output::Hasher;
using output::ManifestOutput;
using output::PageCache;
using output::Piece;
using output::PreCommitCheck;
using output::Progress;
using output::TensorWork;

namespace {

constexpr std::uint64_t kWriteBackBytes = 8u << 20;
// With drop, inputs leave the page cache in whole chunks of this size (release_input).
constexpr std::uint64_t kInputDropBytes = 8u << 20;

// Bytes that are only moved go from pread to hash to pwrite through a window this small, which
// stays in the core's L2 cache: through the whole 8 MiB staging buffer, each byte went through
// memory three times (read into the buffer, hashed, copied out by pwrite), and the copy cost 2-4x
// the CPU of cp's in-kernel copy_file_range (bench/README.md, "Copy paths").
constexpr std::size_t kWindowBytes = 256u << 10;

// One output file while it is being written. Pieces may be read and written by any thread in any
// order, but they are hashed strictly in data order: a thread holding piece k waits until piece
// k-1 is hashed. Pieces leave the shared queue in order, so piece k-1 is always already taken by
// a running thread: the wait cannot deadlock, and it is short (hashing runs at memory speed).
struct FileState {
  std::mutex mutex;
  std::condition_variable hashed;
  std::size_t next_to_hash = 0;
  std::size_t written = 0;
  std::uint64_t dropped_to = 0;  // with drop: bytes of the file before it left the page cache
  Hasher file_hash;
  Hasher tensor_hash;
  std::vector<std::uint64_t> tensor_xxh3;  // per planned tensor (OutputFile::tensors)
  std::optional<st::OutputFile> out;
  std::uint64_t file_xxh3 = 0;
  bool committed = false;
};

// Pieces [first, end) of one file, copied by one thread with one pwrite: a large tensor's piece
// alone, or neighbouring small ones up to a window (kWindowBytes), so that a checkpoint of
// 100,000s of small tensors costs a system call and a hashing turn per window, not per tensor.
// A part of a plain copy's window: `length` bytes of a piece from `in_piece` on.
struct Segment {
  std::size_t piece = 0;
  std::uint64_t in_piece = 0;
  std::size_t length = 0;
};

// One thread's buffers, reused from job to job. Their pages count in the process's memory only
// once a job uses them (a plain copy uses a window of the staging buffer; the scratch buffer
// serves casts only).
struct Staging {
  PageBuffer buffer;                  // the staging buffer (a plain copy uses its first window)
  PageBuffer scratch;                 // source bytes before a cast or transform
  std::vector<std::uint64_t> starts;  // per piece of a plain job: its input offset
  std::vector<Segment> segments;      // of the current window
};

struct Job {
  std::size_t file = 0;
  std::size_t first = 0;
  std::size_t end = 0;
};

class Engine {
 public:
  Engine(const plan::Plan& plan, std::vector<FileWork>& work, std::size_t piece_bytes, PageCache cache,
         Progress& progress, const CommitHook& on_commit, const PreCommitCheck& before_commit)
      : plan_(plan),
        work_(work),
        mp_(plan.model_parallel),
        states_(work.size()),
        piece_bytes_(piece_bytes),
        drop_(cache == PageCache::drop),
        window_bytes_(std::max<std::size_t>(8, std::min(kWindowBytes, piece_bytes / 4))),
        progress_(progress),
        on_commit_(on_commit),
        before_commit_(before_commit) {
    for (const std::string& path : plan.input_files) inputs_.emplace_back(path);
    for (const io::ReadOnlyFile& input : inputs_) input_files_.push_back({input.fd(), &input.path()});
    if (drop_) {
      for (const io::ReadOnlyFile& input : inputs_) io::advise_sequential(input.fd());
    }
    std::vector<std::uint32_t> readers(plan.sources.size());
    for (std::size_t f = 0; f < work.size(); ++f) {
      states_[f].file_hash.update(work[f].prefix);  // then the header, when the file is opened
      states_[f].tensor_xxh3.resize(work[f].planned->tensors.size());
      const std::size_t first_job = jobs_.size();
      for (std::size_t p = 0; p < work[f].pieces.size(); ++p) {
        add_to_jobs(f, p);
        ++readers[source_of(work[f], work[f].pieces[p]).index];
      }
      queues_.push_back({first_job, jobs_.size()});
    }
    jobs_.shrink_to_fit();
    unread_pieces_ = std::vector<std::atomic<std::uint32_t>>(readers.size());
    for (std::size_t i = 0; i < readers.size(); ++i) unread_pieces_[i] = readers[i];
    if (drop_) count_unread_chunks(readers);
  }

  void run(unsigned threads) {
    std::vector<std::thread> pool;
    const auto count = std::max<std::size_t>(1, std::min<std::size_t>(threads, jobs_.size()));
    for (std::size_t t = 0; t < count; ++t) pool.emplace_back([this] { work_loop(); });
    for (std::thread& t : pool) t.join();
    // A file without tensors has no pieces: it is written here, header only.
    for (std::size_t f = 0; f < work_.size() && !error_; ++f) {
      if (!states_[f].committed)
        guarded([&] {
          open_file(f);
          finish_file(f);
          commit_file(f);
        });
    }
    if (error_) {
      states_.clear();  // removes every temporary not yet committed
      std::rethrow_exception(error_);
    }
  }

 private:
  template <typename F>
  void guarded(F&& f) {
    try {
      f();
    } catch (...) {
      fail(std::current_exception());
    }
  }

  void fail(std::exception_ptr error) {
    {
      std::lock_guard lock(error_mutex_);
      if (!error_) error_ = error;
    }
    failed_ = true;
    for (FileState& s : states_) {
      std::lock_guard lock(s.mutex);  // no waiter may miss the news between its check and its wait
      s.hashed.notify_all();
    }
  }

  void work_loop() {
    Staging staging{PageBuffer(piece_bytes_), PageBuffer(std::max(piece_bytes_, kMinScratchBytes)), {}, {}};
    guarded([&] {
      for (;;) {
        if (failed_) return;
        if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
        const std::optional<std::size_t> next = take_job();
        if (!next) return;
        copy_job(*next, staging);
        finish_job(*next);
      }
    });
  }

  // The next job of the first file (in rank order) that no thread is in, so that threads copy
  // different files and none waits for another's hashing turn; when every file with jobs left has
  // a thread, the next job of the first of them (it then waits for the job before it, which a
  // running thread holds: jobs of a file are taken in order, so this cannot deadlock).
  std::optional<std::size_t> take_job() {
    std::lock_guard lock(queue_mutex_);
    while (first_open_ < queues_.size() && queues_[first_open_].next == queues_[first_open_].end)
      ++first_open_;
    FileQueue* chosen = nullptr;
    for (std::size_t f = first_open_; f < queues_.size(); ++f) {
      FileQueue& q = queues_[f];
      if (q.next == q.end) continue;
      if (chosen == nullptr) chosen = &q;
      if (q.threads == 0) {
        chosen = &q;
        break;
      }
    }
    if (chosen == nullptr) return std::nullopt;
    ++chosen->threads;
    return chosen->next++;
  }
  void finish_job(std::size_t j) {
    std::lock_guard lock(queue_mutex_);
    --queues_[jobs_[j].file].threads;
  }

  // Every job of the file calls it before hashing its data: the header is hashed here, first.
  void open_file(std::size_t f) {
    std::lock_guard lock(states_[f].mutex);
    if (states_[f].out) return;
    // Laid out again: build_file_work kept only the sizes.
    const st::FileLayout layout = output::layout_of(*work_[f].planned);
    if (layout.data_start != work_[f].layout.data_start || layout.file_size != work_[f].layout.file_size)
      throw std::logic_error(fmt::format("{}: laid out differently when opened", work_[f].final_path));
    states_[f].file_hash.update(layout.header);  // OutputFile::create writes it from the layout
    states_[f].out.emplace(st::OutputFile::create(work_[f].final_path, layout));
  }

  // Output bytes [offset, offset + length) of the file that piece `p` covers.
  std::pair<std::uint64_t, std::uint64_t> piece_range(const FileWork& w, std::size_t p) const {
    const Piece& piece = w.pieces[p];
    return {w.tensors[piece.tensor].offset + piece.begin, piece.end - piece.begin};
  }
  std::pair<std::uint64_t, std::uint64_t> job_range(const Job& job) const {
    const FileWork& w = work_[job.file];
    const auto [offset, length] = piece_range(w, job.first);
    const auto [last_offset, last_length] = piece_range(w, job.end - 1);
    return {offset, last_offset + last_length - offset};
  }

  // Piece p of file f joins the last job when that job is of the same file, ends where the piece
  // starts (the layout packs tensors without gaps, so it always does) and stays within a window:
  // small tensors, cast or not, are then read, hashed and written while in cache.
  void add_to_jobs(std::size_t f, std::size_t p) {
    const auto [offset, length] = piece_range(work_[f], p);
    if (!jobs_.empty() && jobs_.back().file == f) {
      const auto [job_offset, job_length] = job_range(jobs_.back());
      if (job_offset + job_length == offset && job_length + length <= window_bytes_) {
        jobs_.back().end = p + 1;
        return;
      }
    }
    jobs_.push_back({f, p, p + 1});
  }

  struct SourceRef {
    std::size_t index = 0;  // into Plan::sources
    const plan::Source& source;
  };
  SourceRef source_of(const FileWork& w, const Piece& piece) const {
    const plan::PlannedTensor& t = w.planned->tensors[w.tensors[piece.tensor].planned];
    const std::size_t index =
        t.composite == plan::kNoComposite ? t.source : CompositeStream(plan_, t).source_at(piece.begin);
    return {index, plan_.sources[index]};
  }

  // With drop: for each input file, the bytes of each kInputDropBytes chunk that sources this run
  // reads still have to be read (for the last time), from `readers` (per source: pieces that read it).
  void count_unread_chunks(const std::vector<std::uint32_t>& readers) {
    std::vector<std::vector<std::uint64_t>> unread(inputs_.size());
    for (std::size_t i = 0; i < readers.size(); ++i) {
      const plan::Source& s = plan_.sources[i];
      if (readers[i] == 0 || s.bytes == 0) continue;
      std::vector<std::uint64_t>& chunks = unread[s.file];
      const std::uint64_t last = (s.offset + s.bytes - 1) / kInputDropBytes;
      if (chunks.size() <= last) chunks.resize(last + 1);
      for_each_chunk(s, [&](std::uint64_t c, std::uint64_t n) { chunks[c] += n; });
    }
    unread_in_chunk_.resize(inputs_.size());
    for (std::size_t f = 0; f < inputs_.size(); ++f) {
      unread_in_chunk_[f] = std::vector<std::atomic<std::uint64_t>>(unread[f].size());
      for (std::size_t c = 0; c < unread[f].size(); ++c) unread_in_chunk_[f][c] = unread[f][c];
    }
  }
  // Calls f(chunk, bytes of the source in it) for each kInputDropBytes chunk the source overlaps.
  template <typename F>
  static void for_each_chunk(const plan::Source& s, F&& f) {
    const std::uint64_t end = s.offset + s.bytes;
    for (std::uint64_t c = s.offset / kInputDropBytes; c * kInputDropBytes < end; ++c) {
      f(c, std::min(end, (c + 1) * kInputDropBytes) - std::max(s.offset, c * kInputDropBytes));
    }
  }

  // With drop: once every piece from a source is read, its bytes count as read in their chunks of
  // the input, and a chunk whose bytes are all read leaves the page cache. Per source, a checkpoint
  // of 100,000s of small tensors made a system call per tensor, and kept the pages neighbours share.
  void release_input(const FileWork& w, const Piece& piece) {
    const SourceRef ref = source_of(w, piece);
    if (--unread_pieces_[ref.index] != 0 || !drop_ || ref.source.bytes == 0) return;
    std::vector<std::atomic<std::uint64_t>>& chunks = unread_in_chunk_[ref.source.file];
    const int fd = inputs_[ref.source.file].fd();
    for_each_chunk(ref.source, [&](std::uint64_t c, std::uint64_t n) {
      if (chunks[c].fetch_sub(n) == n) io::drop_cached(fd, c * kInputDropBytes, kInputDropBytes);
    });
  }

  // Sends written data to disk in whole kWriteBackBytes chunks of the file: when a job ends past
  // a chunk boundary, the chunks before it are sent (a neighbour's bytes still in another thread's
  // hands are sent later, by fsync at the latest). Per job, small jobs would each send their
  // shared pages again, one small write each. With drop, waits for what lies more than
  // kDropBehindBytes before the job in the file and was not dropped yet (long written, normally
  // on disk already) and drops it from the page cache. A part may still be in another thread's
  // hands: then less is dropped now, and the rest before commit.
  void write_behind(std::size_t j) {
    const Job& job = jobs_[j];
    FileState& s = states_[job.file];
    const auto [offset, length] = job_range(job);
    const std::uint64_t from = offset / kWriteBackBytes * kWriteBackBytes;
    const std::uint64_t to = (offset + length) / kWriteBackBytes * kWriteBackBytes;
    if (to > from) s.out->start_writeback(from, to - from);
    if (!drop_ || offset < output::kDropBehindBytes) return;
    const std::uint64_t drop_to = (offset - output::kDropBehindBytes) / kWriteBackBytes * kWriteBackBytes;
    std::uint64_t drop_from = 0;
    {
      std::lock_guard lock(s.mutex);
      if (drop_to <= s.dropped_to) return;
      drop_from = std::exchange(s.dropped_to, drop_to);
    }
    s.out->drop_written(drop_from, drop_to - drop_from);
  }

  // Input ranges bound for neighbouring places of a buffer, read with one pread while each starts
  // where the one before ended in the same input file.
  struct PendingRead {
    std::size_t input = 0;
    std::uint64_t from = 0;  // in the input file
    std::size_t at = 0;      // in the buffer
    std::size_t length = 0;

    void add(std::size_t file, std::uint64_t offset, std::size_t to, std::size_t n,
             const std::vector<io::ReadOnlyFile>& inputs, std::span<std::byte> buffer) {
      if (length != 0 && file == input && from + length == offset && at + length == to) {
        length += n;
        return;
      }
      flush(inputs, buffer);
      *this = {file, offset, to, n};
    }
    void flush(const std::vector<io::ReadOnlyFile>& inputs, std::span<std::byte> buffer) {
      if (length == 0) return;
      const io::ReadOnlyFile& file = inputs[input];
      io::pread_exact(file.fd(), file.path(), from, buffer.subspan(at, length));
      length = 0;
    }
  };

  // Fills `data` with the job's pieces in order. Neighbouring pieces that are plain ranges of the
  // same input file, one after the other there too, are read with one pread.
  void read_job(const Job& job, std::span<std::byte> data, std::span<std::byte> scratch) {
    const FileWork& w = work_[job.file];
    PendingRead pending;
    const auto flush = [&] { pending.flush(inputs_, data); };
    std::size_t at = 0;
    for (std::size_t p = job.first; p < job.end; ++p) {
      const Piece& piece = w.pieces[p];
      const TensorWork& tensor = w.tensors[piece.tensor];
      const std::size_t length = piece.end - piece.begin;
      const auto out = data.subspan(at, length);
      const io::ReadOnlyFile& input = inputs_[tensor.input];
      const plan::PlannedTensor& planned = w.planned->tensors[tensor.planned];
      if (planned.composite != plan::kNoComposite) {
        flush();
        CompositeStream(plan_, planned).read(input_files_, piece.begin, out, scratch);
      } else {
        const TensorStream stream(plan_, planned);
        if (const auto start = stream.plain_source_offset()) {
          pending.add(tensor.input, *start + piece.begin, at, length, inputs_, data);
        } else {
          flush();
          CompanionInput companion;
          if (const auto file = stream.companion_file())
            companion = {inputs_[*file].fd(), &inputs_[*file].path(), {}};
          if (stream.needs_input_files()) companion.files = inputs_;
          stream.read(input.fd(), input.path(), piece.begin, out, scratch, companion);
        }
      }
      at += length;
    }
    flush();
    for (std::size_t p = job.first; p < job.end; ++p) release_input(w, w.pieces[p]);
  }

  void copy_job(std::size_t j, Staging& staging) {
    const Job& job = jobs_[j];
    FileWork& w = work_[job.file];
    FileState& s = states_[job.file];
    if (job.first == 0) progress_.set_current(w.planned->file);
    open_file(job.file);
    const auto [offset, length] = job_range(job);
    const auto data = staging.buffer.span().first(length);
    if (plain_starts(job, staging.starts)) {
      if (!copy_plain(job, offset, staging)) return;
    } else if (!copy_buffered(job, offset, data, staging.scratch.span())) {
      return;
    }
    write_behind(j);
    progress_.add(data.size());
    bool last = false;
    {
      std::lock_guard lock(s.mutex);
      s.written += job.end - job.first;
      last = s.written == w.pieces.size();
    }
    if (last) {
      finish_file(job.file);
      commit_file(job.file);
    }
  }

  // Waits until every job before `job` in its file is hashed; false when the run failed instead.
  bool wait_turn(const Job& job) {
    FileState& s = states_[job.file];
    std::unique_lock lock(s.mutex);
    s.hashed.wait(lock, [&] { return s.next_to_hash == job.first || failed_; });
    return !failed_;
  }
  void pass_turn(const Job& job) {
    FileState& s = states_[job.file];
    {
      std::lock_guard lock(s.mutex);
      s.next_to_hash = job.end;
    }
    s.hashed.notify_all();
  }

  // Whether every piece of the job is a plain range of its input (TensorStream::plain_source_offset);
  // then `starts` holds where each starts in the input.
  bool plain_starts(const Job& job, std::vector<std::uint64_t>& starts) const {
    const FileWork& w = work_[job.file];
    starts.clear();
    for (std::size_t p = job.first; p < job.end; ++p) {
      const plan::PlannedTensor& planned = w.planned->tensors[w.tensors[w.pieces[p].tensor].planned];
      if (planned.composite != plan::kNoComposite) return false;
      const auto start = TensorStream(plan_, planned).plain_source_offset();
      if (!start) return false;
      starts.push_back(*start);
    }
    return true;
  }

  // Pieces that are only moved, a window at a time: preads (one per run of neighbouring input
  // ranges) into the window, hashed there, written with one pwrite, while the window is still in
  // cache. Holds the file's hashing turn for the whole job.
  bool copy_plain(const Job& job, std::uint64_t offset, Staging& staging) {
    const FileWork& w = work_[job.file];
    FileState& s = states_[job.file];
    const std::vector<std::uint64_t>& starts = staging.starts;
    std::vector<Segment>& segments = staging.segments;
    if (!wait_turn(job)) return false;
    std::size_t p = job.first;
    std::uint64_t in_piece = 0;
    while (p < job.end) {
      const auto window = staging.buffer.span().first(window_bytes_);
      segments.clear();
      PendingRead pending;
      std::size_t at = 0;
      while (p < job.end && (at < window.size() || w.pieces[p].end == w.pieces[p].begin)) {
        const Piece& piece = w.pieces[p];
        const std::uint64_t piece_length = piece.end - piece.begin;
        const auto n =
            static_cast<std::size_t>(std::min<std::uint64_t>(window.size() - at, piece_length - in_piece));
        pending.add(w.tensors[piece.tensor].input, starts[p - job.first] + piece.begin + in_piece, at, n,
                    inputs_, window);
        segments.push_back({p, in_piece, n});
        at += n;
        in_piece += n;
        if (in_piece == piece_length) ++p, in_piece = 0;
      }
      pending.flush(inputs_, window);
      std::size_t pos = 0;
      for (const Segment& segment : segments) {
        const Piece& piece = w.pieces[segment.piece];
        if (piece.first && segment.in_piece == 0) s.tensor_hash.reset();
        s.tensor_hash.update(window.subspan(pos, segment.length));
        pos += segment.length;
        if (piece.last && segment.in_piece + segment.length == piece.end - piece.begin)
          s.tensor_xxh3[w.tensors[piece.tensor].planned] = s.tensor_hash.digest();
      }
      s.file_hash.update(window.first(at));
      s.out->write_at(offset, window.first(at));
      offset += at;
    }
    pass_turn(job);
    for (std::size_t q = job.first; q < job.end; ++q) release_input(w, w.pieces[q]);
    return true;
  }

  // Any other job: its pieces read (and cast or transformed) into the staging buffer while other
  // jobs are hashed, then hashed in turn and written with one pwrite.
  bool copy_buffered(const Job& job, std::uint64_t offset, std::span<std::byte> data,
                     std::span<std::byte> scratch) {
    const FileWork& w = work_[job.file];
    FileState& s = states_[job.file];
    read_job(job, data, scratch);
    {
      std::unique_lock lock(s.mutex);
      s.hashed.wait(lock, [&] { return s.next_to_hash == job.first || failed_; });
      if (failed_) return false;
      std::size_t at = 0;
      for (std::size_t p = job.first; p < job.end; ++p) {
        const Piece& piece = w.pieces[p];
        if (piece.first) s.tensor_hash.reset();
        s.tensor_hash.update(data.subspan(at, piece.end - piece.begin));
        if (piece.last) s.tensor_xxh3[w.tensors[piece.tensor].planned] = s.tensor_hash.digest();
        at += piece.end - piece.begin;
      }
      s.file_hash.update(data);
      s.next_to_hash = job.end;
    }
    s.hashed.notify_all();
    s.out->write_at(offset, data);
    return true;
  }

  // The file's manifest entry; valid once its last piece is hashed. Its tensors are made one at a
  // time as the entry is recorded (until the file is released): held at once, they were 10s of MB.
  output::CommittedEntry entry(std::size_t f) const {
    const FileWork& w = work_[f];
    const plan::OutputFile& file = *w.planned;
    const std::vector<std::uint64_t>& xxh3 = states_[f].tensor_xxh3;
    return {ManifestOutput{file.rank, file.file, w.layout.file_size, states_[f].file_xxh3, {}},
            output::TensorLines{file.tensors.size(), [this, &file, &xxh3](std::size_t t) {
                                  const plan::PlannedTensor& planned = file.tensors[t];
                                  return output::ManifestTensor{planned.name, xxh3[t],
                                                                output::cut_of(plan_, planned, file.rank),
                                                                output::origin_of(plan_, planned)};
                                }}};
  }

  void finish_file(std::size_t f) { states_[f].file_xxh3 = states_[f].file_hash.digest(); }
  void commit_file(std::size_t f) {
    if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
    if (before_commit_) before_commit_();
    if (drop_) states_[f].out->drop_written(0, work_[f].layout.file_size);
    states_[f].out->commit();
    states_[f].committed = true;
    if (on_commit_) on_commit_(entry(f));
    release(f);
  }

  // A committed file's per-tensor work is needed no more (no thread holds one of its pieces once
  // the last is written): with 100,000s of tensors, freeing it file by file keeps the peak to
  // the plan and the files not yet written. What copy_files' caller reads (planned, final_path,
  // the layout's sizes) stays.
  void release(std::size_t f) {
    FileWork& w = work_[f];
    std::vector<TensorWork>().swap(w.tensors);
    std::vector<Piece>().swap(w.pieces);
    std::vector<std::size_t>().swap(w.layout.order);
    std::vector<std::uint64_t>().swap(w.layout.offset);
    std::vector<std::uint64_t>().swap(w.layout.bytes);
    std::vector<std::uint64_t>().swap(states_[f].tensor_xxh3);
  }

  const plan::Plan& plan_;
  std::vector<FileWork>& work_;
  std::uint64_t mp_;
  std::vector<io::ReadOnlyFile> inputs_;
  std::vector<InputFile> input_files_;                     // inputs_ as CompositeStream reads them
  std::vector<std::atomic<std::uint32_t>> unread_pieces_;  // per Plan::sources: pieces still to read
  // With drop, per input file and kInputDropBytes chunk of it: source bytes still to be read.
  std::vector<std::vector<std::atomic<std::uint64_t>>> unread_in_chunk_;
  std::vector<FileState> states_;
  std::vector<Job> jobs_;
  std::size_t piece_bytes_;
  bool drop_;
  std::size_t window_bytes_;  // kWindowBytes, or a quarter of a smaller staging buffer
  Progress& progress_;
  const CommitHook& on_commit_;
  const PreCommitCheck& before_commit_;
  // Per file: its jobs [next, end) in jobs_ not taken yet, and the threads copying one of its jobs.
  struct FileQueue {
    std::size_t next = 0;
    std::size_t end = 0;
    unsigned threads = 0;
  };
  std::mutex queue_mutex_;
  std::vector<FileQueue> queues_;
  std::size_t first_open_ = 0;  // no file before it has jobs left
  std::atomic<bool> failed_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace

void copy_files(const plan::Plan& plan, std::vector<FileWork>& work, unsigned threads,
                std::size_t piece_bytes, PageCache cache, Progress& progress, const CommitHook& on_commit,
                const PreCommitCheck& before_commit) {
  Engine engine(plan, work, piece_bytes, cache, progress, on_commit, before_commit);
  engine.run(threads);
}

}  // namespace shardwise::convert
