#include <shardwise/convert/converter.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include <shardwise/convert/checksum.hpp>
#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>

#include "convert/atomic_file.hpp"
#include "convert/copy_engine.hpp"
#include "convert/io.hpp"
#include "convert/output_folder.hpp"

namespace shardwise::convert {

namespace {

// All staging buffers together stay within this, whatever the thread count: with the page cache
// not counted, they are most of the process's memory.
constexpr std::size_t kStagingBudget = 128u << 20;
constexpr std::size_t kMaxPieceBytes = 8u << 20;
constexpr std::size_t kMinPieceBytes = 256u << 10;

unsigned thread_count(unsigned requested) {
  const unsigned wanted = requested != 0 ? requested : std::max(1u, std::thread::hardware_concurrency());
  return std::min(wanted, 256u);
}

std::size_t piece_bytes_for(std::size_t requested, unsigned threads) {
  if (requested != 0) return std::max<std::size_t>(requested, kMinScratchBytes);
  // Each thread holds a piece and a scratch buffer of the same size.
  const std::size_t fair = kStagingBudget / (2 * static_cast<std::size_t>(threads));
  return std::clamp(fair / (64u << 10) * (64u << 10), kMinPieceBytes, kMaxPieceBytes);
}

std::uint64_t side_files_bytes(const plan::Plan& plan) {
  std::uint64_t total = 0;
  for (const std::string& name : plan.side_files) {
    total += io::ReadOnlyFile((std::filesystem::path(plan.input_root) / name).string()).size();
  }
  return total;
}

// Copies one side file byte for byte through a temporary name; returns its checksum.
ManifestSideFile copy_side_file(const plan::Plan& plan, const std::string& name, const std::string& out_dir,
                                Progress& progress) {
  io::ReadOnlyFile in((std::filesystem::path(plan.input_root) / name).string());
  AtomicFile out((std::filesystem::path(out_dir) / name).string());
  progress.set_current(name);
  std::vector<std::byte> buffer(1u << 20);
  Hasher hasher;
  const std::uint64_t size = in.size();
  for (std::uint64_t done = 0; done < size;) {
    if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - done));
    io::pread_exact(in.fd(), in.path(), done, std::span(buffer).first(n));
    hasher.update(std::span(buffer).first(n));
    out.write(std::span(buffer).first(n));
    progress.add(n);
    done += n;
  }
  out.commit();
  return {name, hasher.digest()};
}

}  // namespace

ConvertSummary convert_plan(const plan::Plan& plan, const ConvertOptions& options) {
  install_cleanup_handlers();
  const auto start = std::chrono::steady_clock::now();
  const std::string out_dir = prepare_output_folder(plan, options.output_dir, options.overwrite);

  ConvertSummary summary;
  summary.threads = thread_count(options.threads);
  const std::size_t piece_bytes = piece_bytes_for(options.piece_bytes, summary.threads);
  std::vector<FileWork> work = build_file_work(plan, out_dir, piece_bytes);
  std::uint64_t total = side_files_bytes(plan);
  for (const FileWork& w : work) total += w.layout.file_size - w.layout.data_start;

  Manifest manifest = provisional_manifest(plan, options.rules, input_headers_xxh3(plan));
  write_manifest(out_dir, manifest);

  Progress progress(options.progress, total);
  manifest.outputs = copy_files(plan, work, summary.threads, piece_bytes, progress);
  manifest.side_files.clear();
  for (const std::string& name : plan.side_files) {
    manifest.side_files.push_back(copy_side_file(plan, name, out_dir, progress));
  }
  progress.finish();
  manifest.complete = true;
  write_manifest(out_dir, manifest);

  for (const FileWork& w : work) {
    summary.tensors += w.tensors.size();
    summary.bytes += w.layout.file_size;
  }
  summary.files = work.size();
  summary.side_files = plan.side_files.size();
  summary.bytes += side_files_bytes(plan);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  summary.manifest = std::move(manifest);
  return summary;
}

std::string format_summary(const ConvertSummary& s) {
  const double gb = static_cast<double>(s.bytes) / 1e9;
  return fmt::format("wrote {} file{} ({} tensors) and {} side file{}: {:.2f} GB in {:.1f} s ({:.2f} GB/s, {} thread{})",
                     s.files, s.files == 1 ? "" : "s", s.tensors, s.side_files, s.side_files == 1 ? "" : "s", gb,
                     s.seconds, s.seconds > 0 ? gb / s.seconds : 0.0, s.threads, s.threads == 1 ? "" : "s");
}

}  // namespace shardwise::convert
