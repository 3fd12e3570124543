#pragma once
// Comparing a shardwise-manifest.json with what is on disk (and, given a plan, with the plan).
// Internal to verify.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <shardwise/output/manifest.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/safetensors/header.hpp>

#include "verify/findings.hpp"

namespace shardwise::verify {

// An output file as read: its size and checksums.
struct ScannedOutput {
  std::uint64_t size = 0;
  std::uint64_t whole = 0;
  // Each tensor's name and XXH3, sorted by name (a header's order): a vector rather than a map,
  // as a full-size model has 100,000s.
  std::vector<std::pair<std::string, std::uint64_t>> tensors;
  // The XXH3 of the tensor `name`; nullptr when the file has none of that name.
  const std::uint64_t* find(std::string_view name) const;
  // Adds the tensors of a header, in its order, with their digests.
  void add_tensors(const std::vector<st::TensorInfo>& header, const std::vector<std::uint64_t>& digests);
};

// What verification read from the output folder. Files that are missing or not valid
// safetensors are absent (they were reported when found so).
struct DiskState {
  std::map<std::string, ScannedOutput> outputs;
  std::map<std::string, std::uint64_t> side_files;  // XXH3-64 of each side file read
};

enum class ManifestRole {
  sole_reference,  // `--manifest-only`: every difference from the manifest is a mismatch
  cross_check,     // beside a plan: only what the plan's checks did not already report
};

// Sizes, whole-file, per-tensor and side-file checksums of a complete manifest against `disk`.
void compare_manifest(const output::Manifest& manifest, const DiskState& disk, ManifestRole role,
                      Findings& findings);

// Whether the manifest describes a conversion of `plan` with these rules and this input: its
// completeness, rules, parameters, input headers, output and side files.
void compare_manifest_with_plan(const output::Manifest& manifest, const plan::Plan& plan,
                                const output::RulesIdentity& rules, std::uint64_t headers_xxh3,
                                Findings& findings);

// How the input files differ from the manifest's record of them (what the conversion planned and
// found unchanged at its end), one line per file: "model.safetensors changed since the conversion:
// modified (mtime ...)". Not mismatches by themselves: verification compares the bytes, and a
// copied or touched checkpoint holds the same ones; they explain mismatches found there. A
// version 1 manifest has no record: one line says so.
std::vector<std::string> input_changes(const output::Manifest& manifest, const plan::Plan& plan);

}  // namespace shardwise::verify
