// Executing a reshard: new rank files written through temporaries, files in parallel, each file's
// bytes gathered, hashed and written in order; side files copied and checked; the manifest last.
#include <shardwise/reshard/reshard.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include <shardwise/convert/checksum.hpp>
#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/writer.hpp>

#include "convert/atomic_file.hpp"
#include "convert/output_folder.hpp"
#include "core/io.hpp"
#include "reshard/gather.hpp"

namespace shardwise::reshard {

namespace fs = std::filesystem;

namespace {

std::string length_prefix_and_header(const st::FileLayout& layout) {
  std::string prefix(8, '\0');
  const auto n = static_cast<std::uint64_t>(layout.header.size());
  for (std::size_t i = 0; i < 8; ++i) prefix[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return prefix + layout.header;
}

// Throws Error(input) when an old file is no longer what the plan read.
void check_unchanged(const ReshardPlan& plan) {
  for (const OldFile& old : plan.old_files) {
    const std::optional<FileIdentity> now = identity_of_path(old.path);
    if (!now || !(*now == old.identity)) {
      throw Error(ErrorKind::input, fmt::format("{}: changed while it was resharded; nothing was vouched for", old.path));
    }
  }
}

// The bytes of one output file in order: staged, hashed (file and current tensor), written.
class FileStream {
 public:
  FileStream(st::OutputFile& out, std::uint64_t offset, std::span<std::byte> staging, convert::Hasher& file_hash)
      : out_(out), offset_(offset), staging_(staging), file_hash_(file_hash) {}

  std::span<std::byte> reserve(std::size_t n) {
    if (used_ + n > staging_.size()) flush();
    const auto span = staging_.subspan(used_, n);
    used_ += n;
    return span;
  }
  // Ends the current tensor: returns its checksum.
  std::uint64_t end_tensor() {
    flush();
    const std::uint64_t digest = tensor_hash_.digest();
    tensor_hash_.reset();
    return digest;
  }
  std::uint64_t written() const noexcept { return written_; }

 private:
  void flush() {
    if (used_ == 0) return;
    if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
    const auto data = staging_.first(used_);
    file_hash_.update(data);
    tensor_hash_.update(data);
    out_.write_at(offset_, data);
    offset_ += used_;
    written_ += used_;
    used_ = 0;
  }

  st::OutputFile& out_;
  std::uint64_t offset_;
  std::span<std::byte> staging_;
  convert::Hasher& file_hash_;
  convert::Hasher tensor_hash_;
  std::size_t used_ = 0;
  std::uint64_t written_ = 0;
};

convert::TensorCut cut_of(const ReshardPlan& plan, const NewTensor& t) {
  const LogicalTensor& logical = plan.logical[t.logical];
  convert::TensorCut cut{logical.dtype, t.shape, logical.placement, 0, 0, 0};
  if (logical.placement.kind == plan::Placement::Kind::split) {
    cut.begin = t.begin;
    cut.end = t.end;
    cut.size = logical.shape[static_cast<std::size_t>(logical.placement.dim)];
  }
  return cut;
}

// Writes one new rank file; returns its manifest entry.
convert::ManifestOutput write_file(const ReshardPlan& plan, const NewFile& file, const std::string& folder,
                                   const std::vector<io::ReadOnlyFile>& inputs, std::span<std::byte> staging,
                                   std::span<std::byte> scratch, convert::Progress& progress) {
  std::vector<st::OutputTensor> tensors;
  for (const NewTensor& t : file.tensors) tensors.push_back({plan.logical[t.logical].name, plan.logical[t.logical].dtype, t.shape});
  const st::FileLayout layout = st::layout_file(tensors);
  st::OutputFile out = st::OutputFile::create((fs::path(folder) / file.file).string(), layout);
  convert::Hasher file_hash;
  file_hash.update(length_prefix_and_header(layout));
  convert::ManifestOutput entry{file.rank, file.file, layout.file_size, 0, {}};
  entry.tensors.resize(file.tensors.size());
  FileStream stream(out, layout.data_start, staging, file_hash);
  progress.set_current(file.file);
  for (const std::size_t index : layout.order) {
    const NewTensor& t = file.tensors[index];
    const std::uint64_t before = stream.written();
    gather(plan, t, inputs, staging.size(), scratch, [&](std::size_t n) { return stream.reserve(n); });
    const std::uint64_t digest = stream.end_tensor();
    if (stream.written() - before != t.bytes || layout.offset[index] != layout.data_start + before) {
      throw Error(ErrorKind::io, fmt::format("{}: {} gathered {} bytes at {}, laid out as {} at {}", file.file,
                                             tensors[index].name, stream.written() - before, before, t.bytes,
                                             layout.offset[index]));
    }
    progress.add(t.bytes);
    entry.tensors[index] = {tensors[index].name, digest, cut_of(plan, t)};
  }
  entry.xxh3 = file_hash.digest();
  check_unchanged(plan);
  out.commit();
  return entry;
}

// Copies a side file through a temporary name, checking it against the old manifest's checksum.
convert::ManifestSideFile copy_side_file(const ReshardPlan& plan, const std::string& name, const std::string& folder) {
  io::ReadOnlyFile in((fs::path(plan.from) / name).string());
  convert::AtomicFile out((fs::path(folder) / name).string());
  std::vector<std::byte> buffer(1u << 20);
  convert::Hasher hasher;
  const std::uint64_t size = in.size();
  for (std::uint64_t done = 0; done < size;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - done));
    io::pread_exact(in.fd(), in.path(), done, std::span(buffer).first(n));
    hasher.update(std::span(buffer).first(n));
    out.write(std::span(buffer).first(n));
    done += n;
  }
  for (const convert::ManifestSideFile& old : plan.from_manifest.side_files) {
    if (old.file == name && old.xxh3 != hasher.digest()) {
      throw Error(ErrorKind::input, fmt::format("{}: xxh3 {}, the manifest says {}", in.path(),
                                                convert::xxh3_hex(hasher.digest()), convert::xxh3_hex(old.xxh3)));
    }
  }
  out.commit();
  return {name, hasher.digest(), false};
}

convert::Manifest manifest_of(const ReshardPlan& plan, bool complete) {
  convert::Manifest m;
  m.complete = complete;
  m.rules = plan.from_manifest.rules;
  // The original checkpoint's, carried over: the new files are made from it as much as the old ones.
  m.input_headers_xxh3 = plan.from_manifest.input_headers_xxh3;
  m.inputs = plan.from_manifest.inputs;
  m.params = plan.from_manifest.params;
  m.params["mp"] = plan.model_parallel;
  for (const NewFile& f : plan.outputs) m.outputs.push_back({f.rank, f.file, 0, 0, {}});
  for (const std::string& side : plan.side_files) m.side_files.push_back({side, 0, false});
  return m;
}

}  // namespace

ReshardSummary execute_reshard(const ReshardPlan& plan, const ReshardOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  install_cleanup_handlers();
  plan::Plan claim_plan;  // what the folder check needs to know: where the input is
  claim_plan.input_root = plan.from;
  convert::FolderClaim claim;
  for (const NewFile& f : plan.outputs) claim.files.push_back(f.file);
  for (const std::string& side : plan.side_files) claim.files.push_back(side);
  claim.files.push_back(convert::kManifestFileName);
  const convert::PreparedFolder folder =
      convert::prepare_output_folder(claim_plan, options.output_dir, options.overwrite, claim);
  convert::Manifest manifest = manifest_of(plan, false);
  convert::write_manifest(folder.path, manifest);

  std::vector<io::ReadOnlyFile> inputs;
  for (const OldFile& old : plan.old_files) inputs.emplace_back(old.path);
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  const auto threads = static_cast<unsigned>(
      std::max<std::size_t>(1, std::min<std::size_t>(options.threads ? options.threads : hardware, plan.outputs.size())));
  convert::Progress progress(options.progress, plan.output_bytes);
  std::vector<convert::ManifestOutput> entries(plan.outputs.size());
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;
  const auto work = [&] {
    std::vector<std::byte> staging(options.piece_bytes);
    std::vector<std::byte> scratch(options.piece_bytes);
    try {
      for (std::size_t f; !failed && (f = next.fetch_add(1)) < plan.outputs.size();) {
        entries[f] = write_file(plan, plan.outputs[f], folder.path, inputs, staging, scratch, progress);
      }
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(work);
  for (std::thread& t : pool) t.join();
  progress.finish();
  if (error) std::rethrow_exception(error);

  ReshardSummary summary;
  manifest.outputs = std::move(entries);
  manifest.side_files.clear();
  for (const std::string& side : plan.side_files) {
    manifest.side_files.push_back(copy_side_file(plan, side, folder.path));
    summary.bytes += io::ReadOnlyFile((fs::path(folder.path) / side).string()).size();
  }
  check_unchanged(plan);
  manifest.complete = true;
  convert::write_manifest(folder.path, manifest);
  summary.files = plan.outputs.size();
  for (const convert::ManifestOutput& o : manifest.outputs) {
    summary.tensors += o.tensors.size();
    summary.bytes += o.bytes;
  }
  summary.side_files = plan.side_files.size();
  summary.threads = threads;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

std::string format_summary(const ReshardSummary& s) {
  const double gb = static_cast<double>(s.bytes) / 1e9;
  return fmt::format("resharded into {} file{} ({} tensors) and {} side file{}: {:.2f} GB in {:.1f} s ({:.2f} GB/s, {} thread{})",
                     s.files, s.files == 1 ? "" : "s", s.tensors, s.side_files, s.side_files == 1 ? "" : "s", gb,
                     s.seconds, s.seconds > 0 ? gb / s.seconds : 0.0, s.threads, s.threads == 1 ? "" : "s");
}

}  // namespace shardwise::reshard
