#include "convert/copy_engine.hpp"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include <shardwise/convert/composite_stream.hpp>
#include <shardwise/convert/tensor_stream.hpp>
#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
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

// One output file while it is being written. Pieces may be read and written by any thread in any
// order, but they are hashed strictly in data order: a thread holding piece k waits until piece
// k-1 is hashed. Pieces leave the shared queue in order, so piece k-1 is always already taken by
// a running thread: the wait cannot deadlock, and it is short (hashing runs at memory speed).
struct FileState {
  std::mutex mutex;
  std::condition_variable hashed;
  std::size_t next_to_hash = 0;
  std::size_t written = 0;
  Hasher file_hash;
  Hasher tensor_hash;
  std::vector<std::uint64_t> tensor_xxh3;  // per FileWork::tensors
  std::optional<st::OutputFile> out;
  std::uint64_t file_xxh3 = 0;
  bool committed = false;
};

struct Job {
  std::size_t file = 0;
  std::size_t piece = 0;
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
        drop_lag_(std::max<std::size_t>(1, output::kDropBehindBytes / std::max<std::size_t>(1, piece_bytes))),
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
      states_[f].file_hash.update(work[f].prefix);
      states_[f].file_hash.update(work[f].layout.header);  // OutputFile::create writes it from the layout
      states_[f].tensor_xxh3.resize(work[f].tensors.size());
      for (std::size_t p = 0; p < work[f].pieces.size(); ++p) {
        jobs_.push_back({f, p});
        ++readers[source_of(work[f], work[f].pieces[p]).index];
      }
    }
    unread_pieces_ = std::vector<std::atomic<std::uint32_t>>(readers.size());
    for (std::size_t i = 0; i < readers.size(); ++i) unread_pieces_[i] = readers[i];
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
          finish_file(f);
          open_file(f);
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
    std::vector<std::byte> buffer(piece_bytes_);
    std::vector<std::byte> scratch(std::max(piece_bytes_, kMinScratchBytes));
    guarded([&] {
      for (;;) {
        if (failed_) return;
        if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
        const std::size_t next = next_job_.fetch_add(1);
        if (next >= jobs_.size()) return;
        copy_piece(jobs_[next], buffer, scratch);
      }
    });
  }

  void open_file(std::size_t f) {
    std::lock_guard lock(states_[f].mutex);
    if (states_[f].out) return;
    states_[f].out.emplace(st::OutputFile::create(work_[f].final_path, work_[f].layout));
    std::string().swap(work_[f].layout.header);  // written
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

  // With drop: once every piece from a source is read, its input range leaves the page cache.
  void release_input(const FileWork& w, const Piece& piece) {
    const SourceRef ref = source_of(w, piece);
    if (--unread_pieces_[ref.index] != 0 || !drop_) return;
    io::drop_cached(inputs_[ref.source.file].fd(), ref.source.offset, ref.source.bytes);
  }

  // Sends written data to disk in whole kWriteBackBytes chunks of the file: when a piece ends past
  // a chunk boundary, the chunks before it are sent (a neighbour's bytes still in another thread's
  // hands are sent later, by fsync at the latest). Per piece, small tensors would each send their
  // shared pages again, one small write each. With drop, waits for the piece drop_lag_ earlier in
  // the file (long written, normally on disk already) and drops it from the page cache. That piece
  // may still be in another thread's hands: then less is dropped now, and the rest before commit.
  void write_behind(std::size_t f, std::size_t p) {
    const FileWork& w = work_[f];
    const auto range = [&](std::size_t i) {
      const Piece& piece = w.pieces[i];
      return std::pair{w.tensors[piece.tensor].offset + piece.begin, piece.end - piece.begin};
    };
    const auto [offset, length] = range(p);
    const std::uint64_t from = offset / kWriteBackBytes * kWriteBackBytes;
    const std::uint64_t to = (offset + length) / kWriteBackBytes * kWriteBackBytes;
    if (to > from) states_[f].out->start_writeback(from, to - from);
    if (drop_ && p >= drop_lag_) {
      const auto [old_offset, old_length] = range(p - drop_lag_);
      states_[f].out->drop_written(old_offset, old_length);
    }
  }

  void copy_piece(const Job& job, std::vector<std::byte>& buffer, std::vector<std::byte>& scratch) {
    FileWork& w = work_[job.file];
    FileState& s = states_[job.file];
    const Piece& piece = w.pieces[job.piece];
    const TensorWork& tensor = w.tensors[piece.tensor];
    if (job.piece == 0) progress_.set_current(w.planned->file);
    open_file(job.file);
    const auto data = std::span(buffer).first(piece.end - piece.begin);
    const io::ReadOnlyFile& input = inputs_[tensor.input];
    const plan::PlannedTensor& planned = w.planned->tensors[tensor.planned];
    if (planned.composite != plan::kNoComposite) {
      CompositeStream(plan_, planned).read(input_files_, piece.begin, data, scratch);
    } else {
      const TensorStream stream(plan_, planned);
      CompanionInput companion;
      if (const auto file = stream.companion_file())
        companion = {inputs_[*file].fd(), &inputs_[*file].path(), {}};
      if (stream.needs_input_files()) companion.files = inputs_;
      stream.read(input.fd(), input.path(), piece.begin, data, scratch, companion);
    }
    release_input(w, piece);
    {
      std::unique_lock lock(s.mutex);
      s.hashed.wait(lock, [&] { return s.next_to_hash == job.piece || failed_; });
      if (failed_) return;
      if (piece.first) s.tensor_hash.reset();
      s.tensor_hash.update(data);
      s.file_hash.update(data);
      if (piece.last) s.tensor_xxh3[piece.tensor] = s.tensor_hash.digest();
      ++s.next_to_hash;
    }
    s.hashed.notify_all();
    s.out->write_at(tensor.offset + piece.begin, data);
    write_behind(job.file, job.piece);
    progress_.add(data.size());
    bool last = false;
    {
      std::lock_guard lock(s.mutex);
      last = ++s.written == w.pieces.size();
    }
    if (last) {
      finish_file(job.file);
      commit_file(job.file);
    }
  }

  // The file's manifest entry; valid once its last piece is hashed.
  ManifestOutput entry(std::size_t f) const {
    const FileWork& w = work_[f];
    ManifestOutput result{w.planned->rank, w.planned->file, w.layout.file_size, states_[f].file_xxh3, {}};
    result.tensors.resize(w.tensors.size());
    for (std::size_t t = 0; t < w.tensors.size(); ++t) {
      const plan::PlannedTensor& planned = w.planned->tensors[w.tensors[t].planned];
      result.tensors[w.tensors[t].planned] = {planned.name, states_[f].tensor_xxh3[t],
                                              output::cut_of(plan_, planned, w.planned->rank),
                                              output::origin_of(plan_, planned)};
    }
    return result;
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
  std::vector<FileState> states_;
  std::vector<Job> jobs_;
  std::size_t piece_bytes_;
  bool drop_;
  std::size_t drop_lag_;  // pieces
  Progress& progress_;
  const CommitHook& on_commit_;
  const PreCommitCheck& before_commit_;
  std::atomic<std::size_t> next_job_{0};
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
