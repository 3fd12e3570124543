#pragma once
// The files of an output folder beside its rank files: side files copied byte for byte from the
// input folder, and files the plan computed. Each is written through a temporary name and checked
// against the run's inputs before its commit. Internal to output.

#include <cstdint>
#include <optional>
#include <string>

#include <shardwise/core/paths.hpp>
#include <shardwise/output/input_watch.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/output/progress.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::output {

// Copies `name` from `from_dir` into `out_dir`, no more readable than the file itself; returns its
// entry. The file opened must resolve inside `from_dir` (check_inside_folder, as `links` allows). With
// `expected` (the checksum a manifest records for it), other bytes are Error(input) naming the file and both
// checksums, and the copy is not committed.
ManifestSideFile copy_side_file(const std::string& from_dir, const std::string& name,
                                const std::string& out_dir, OutsideLinks links, const InputWatch& inputs,
                                Progress& progress, std::optional<std::uint64_t> expected = std::nullopt);

// Writes a file the plan computed into `out_dir`; returns its entry.
ManifestSideFile write_generated_file(const plan::GeneratedFile& file, const std::string& out_dir,
                                      const InputWatch& inputs, Progress& progress);

}  // namespace shardwise::output
