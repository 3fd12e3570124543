#pragma once
// A run that writes a folder of rank files: which files this run writes (a whole run, --ranks,
// --distributed), the folder's check and lock, --resume, the run's manifest records and the
// completion of the folder's manifest. `convert` (bytes from a checkpoint) and `reshard` (bytes
// from another folder of rank files) differ only in the OutputWriter they hand it.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <shardwise/output/file_work.hpp>
#include <shardwise/output/input_watch.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/output/page_cache.hpp>
#include <shardwise/output/progress.hpp>
#include <shardwise/output/run_options.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::output {

// A committed file's manifest entry: its tensors in entry.tensors, or (lines.tensor set) made one
// at a time while the run's manifest keeps the entry as text, so that a file's 10,000s of tensors
// are never held as objects at once.
struct CommittedEntry {
  CommittedEntry(ManifestOutput e) : entry(std::move(e)) {}  // NOLINT(google-explicit-constructor)
  CommittedEntry(ManifestOutput e, TensorLines l) : entry(std::move(e)), lines(std::move(l)) {}
  ManifestOutput entry;
  TensorLines lines;
};
// Called with each file's manifest entry right after the file is under its final name; what it
// throws fails the run. The entry is handed over (the run's manifest keeps it) rather than copied:
// a file may hold 10,000s of tensors.
using CommitHook = std::function<void(CommittedEntry&&)>;
// Called once a file's last byte is written, before it gets its final name; what it throws fails
// the run, that file still a temporary.
using PreCommitCheck = std::function<void()>;

// What a run needs to know of the output besides `outline` (the plan::Plan naming the output
// files, their tensors and bytes, the side files, the input folder and files it reads).
struct OutputWriter {
  // The manifest of the whole output, checksums unknown; called once the folder is locked.
  std::function<Manifest(const InputWatch& inputs)> planned;
  // The files of `ranks` (ascending) laid out in `out_dir`: FileWork::planned, final_path and
  // layout are what the run reads; the rest is for `write`.
  std::function<std::vector<FileWork>(std::span<const std::uint64_t> ranks, const std::string& out_dir)>
      layout;
  // Writes `files` as copy_files does (each through a temporary; `on_commit` right after it is
  // under its final name, `before_commit` before).
  std::function<void(std::vector<FileWork>& files, unsigned threads, PageCache cache, Progress& progress,
                     const CommitHook& on_commit, const PreCommitCheck& before_commit)>
      write;
  // The checksum the side file `name` must have (reshard: the old manifest's), or nullopt; unset:
  // none. Side files are copied from the outline's input folder.
  std::function<std::optional<std::uint64_t>(const std::string& name)> side_file_xxh3;
  // For an outline whose outputs do not list their tensors (reshard's, at 100,000s of tensors):
  // output `rank` with its list, made when another run's record of it is compared with the plan.
  // Unset: the outline's outputs list them.
  std::function<plan::OutputFile(std::uint64_t rank)> tensor_list;
};

// Writes this run's share of `outline` (options.ranks, options.launch) with `writer`, and completes
// the folder's manifest when every file is known written; the contract of convert::convert_plan.
RunSummary run_outputs(const plan::Plan& outline, const RunOptions& options, const OutputWriter& writer);

}  // namespace shardwise::output
