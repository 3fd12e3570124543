#pragma once
// `shardwise-manifest.json`: what a conversion wrote, beside its outputs. It names the rules (and
// their hash), the input headers' hash and the parameters, so a later run can tell whether the
// plan changed, and holds XXH3-64 checksums of every output file, tensor and side file.
//
// A manifest with "complete": false is written before any output, listing the planned files
// without checksums: files of an interrupted run stay recognisably shardwise's own.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

inline constexpr const char* kManifestFileName = "shardwise-manifest.json";
inline constexpr const char* kToolVersion = "shardwise 0.1.0";
inline constexpr int kManifestVersion = 1;

struct RulesIdentity {
  std::string name;        // the rules file's `name:`
  std::uint64_t xxh3 = 0;  // XXH3-64 of the rules text as loaded
};

struct ManifestTensor {
  std::string name;
  std::uint64_t xxh3 = 0;  // of the tensor's bytes as written
};

struct ManifestOutput {
  std::uint64_t rank = 0;
  std::string file;
  std::uint64_t bytes = 0;              // the whole file's size (complete manifests only)
  std::uint64_t xxh3 = 0;               // of the whole file (complete manifests only)
  std::vector<ManifestTensor> tensors;  // in output-name order (complete manifests only)
};

struct ManifestSideFile {
  std::string file;
  std::uint64_t xxh3 = 0;
};

struct Manifest {
  bool complete = false;
  std::string tool = kToolVersion;
  RulesIdentity rules;
  std::uint64_t input_headers_xxh3 = 0;
  std::map<std::string, std::uint64_t> params;
  std::vector<ManifestOutput> outputs;  // in rank order
  std::vector<ManifestSideFile> side_files;
};

// XXH3-64 over every input file's name (without folder) and header bytes (length prefix and
// JSON), in plan order: changes when the input's tensors, dtypes, shapes or layout change.
std::uint64_t input_headers_xxh3(const plan::Plan& plan);

// The manifest a conversion of `plan` starts with: planned files, no checksums.
Manifest provisional_manifest(const plan::Plan& plan, const RulesIdentity& rules, std::uint64_t headers_xxh3);

nlohmann::ordered_json manifest_to_json(const Manifest& manifest);
// Throws Error(input) naming `where` when `json` is not a manifest this version understands.
Manifest manifest_from_json(const nlohmann::ordered_json& json, const std::string& where);

// The manifest as written: manifest_to_json's content, one tensor per line.
std::string format_manifest(const Manifest& manifest);

// Reads `<folder>/shardwise-manifest.json`: nullopt when there is none; Error(input) naming the
// path when it is not a valid manifest.
std::optional<Manifest> read_manifest(const std::string& folder);
// Writes it under a temporary name, then renames it into place.
void write_manifest(const std::string& folder, const Manifest& manifest);

}  // namespace shardwise::convert
