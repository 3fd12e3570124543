#pragma once
// Verification of a conversion's output folder, the last step of the data path. Two modes:
//
// - against the plan (verify_plan): every planned file and tensor is present with the planned
//   dtype and shape, nothing extra of ours is there, and every tensor's bytes equal its source
//   slice after the planned cast (XXH3-64 of the bytes expected, streamed from the input, against
//   XXH3-64 of the bytes found). Side files are compared with the input's. A manifest, when
//   present, must agree with the plan and with what is on disk.
// - against the manifest alone (verify_manifest): the input is not read.
//
// Both read every file once, with pread through bounded buffers (never mapped, so RSS stays
// small whatever the size), in parallel. They report every mismatch, not the first: problems
// with the output are findings, not exceptions. Exceptions are kept for problems that make
// verification itself impossible (an unreadable input: Error(input/io)).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <shardwise/output/page_cache.hpp>
#include <shardwise/output/progress.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::verify {

struct VerifyOptions {
  std::string output_dir;
  unsigned threads = 0;  // 0: one per hardware thread
  output::ProgressMode progress = output::ProgressMode::automatic;
  std::size_t buffer_bytes = 0;  // read buffer per thread; 0: automatic (a few MiB, less with many threads)
  // automatic: drop what was read when input and output together exceed half of memory.
  output::PageCache page_cache = output::PageCache::automatic;
};

// One mismatch. `file` is a name within the output folder; `tensor` is empty for problems of a
// whole file. Shown as "FILE: TENSOR: WHAT" (or "FILE: WHAT").
struct Finding {
  std::string file;
  std::string tensor;
  std::string what;
  std::string str() const;
};

struct VerifyReport {
  std::vector<Finding> findings;  // every mismatch, in a deterministic order (file, then tensor)
  // What is worth knowing and is not a mismatch: input files that changed since the conversion
  // (by size, time or inode, as the manifest recorded them) while their bytes may still match.
  std::vector<std::string> notes;
  std::size_t files = 0;    // output files checked (side files excluded)
  std::size_t tensors = 0;  // tensors whose bytes were compared
  std::size_t side_files = 0;
  bool manifest_checked = false;
  std::uint64_t bytes_read = 0;  // input and output bytes hashed
  double seconds = 0;
  unsigned threads = 0;
  bool ok() const noexcept { return findings.empty(); }
};

// Checks options.output_dir against `plan`, made with `rules` (for the output file names and the
// rules identity recorded in a manifest). Throws Error(input/io) when the input cannot be read,
// Error(io) when the output path exists but is not a folder.
VerifyReport verify_plan(const plan::Plan& plan, const rules::Rules& rules, const VerifyOptions& options);

// Checks options.output_dir against its shardwise-manifest.json alone. A missing or invalid
// manifest is a finding; a manifest with "complete": false is reported as an interrupted
// conversion.
VerifyReport verify_manifest(const VerifyOptions& options);

// "verified 8 files (1234 tensors) and 2 side files: 7.04 GB read in 3.1 s (2.27 GB/s, 2 threads)"
// or "verification failed: 3 mismatches in 2 files (8 files, 1234 tensors and 2 side files checked)".
std::string format_summary(const VerifyReport& report);

}  // namespace shardwise::verify
