#include "output/run_manifest.hpp"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/output/work_share.hpp>
#include <shardwise/safetensors/writer.hpp>

#include "output/atomic_file.hpp"

namespace shardwise::output {

namespace fs = std::filesystem;

namespace {

// Keys stay well below the 255-byte limit of a file name.
constexpr std::size_t kMaxListInKey = 64;
constexpr std::string_view kFragmentPrefix = "shardwise-manifest.";
constexpr std::string_view kFragmentSuffix = ".json";

}  // namespace

std::string share_key(std::span<const std::uint64_t> ranks, std::uint64_t process) {
  if (ranks.empty()) return fmt::format("process-{}", process);
  const std::string list = format_rank_list(ranks);
  if (list.size() <= kMaxListInKey) return "ranks-" + list;
  return fmt::format("ranks-{}-{}-{}", ranks.front(), ranks.back(), xxh3_hex(xxh3(list)).substr(0, 8));
}

std::string fragment_name(const std::string& key) {
  return fmt::format("{}{}{}", kFragmentPrefix, key, kFragmentSuffix);
}

bool is_fragment_name(std::string_view name) {
  return name.size() > kFragmentPrefix.size() + kFragmentSuffix.size() && name != kManifestFileName &&
         name.substr(0, kFragmentPrefix.size()) == kFragmentPrefix &&
         name.substr(name.size() - kFragmentSuffix.size()) == kFragmentSuffix;
}

RunManifest::RunManifest(const std::string& folder, const std::string& name, const std::string& temp_stem,
                         Manifest start)
    : path_((fs::path(folder) / name).string()),
      temp_(st::temp_path_for((fs::path(folder) / temp_stem).string())),
      manifest_(std::move(start)) {
  manifest_.complete = false;
  write();
}

void RunManifest::record(ManifestOutput output) {
  output.finished = true;
  std::lock_guard lock(mutex_);
  auto& outputs = manifest_.outputs;
  const auto same =
      std::find_if(outputs.begin(), outputs.end(), [&](auto& o) { return o.file == output.file; });
  if (same != outputs.end()) {
    *same = std::move(output);
  } else {
    outputs.push_back(std::move(output));
    std::stable_sort(outputs.begin(), outputs.end(), [](auto& a, auto& b) { return a.rank < b.rank; });
  }
  write();
}

void RunManifest::record(ManifestSideFile side, Rewrite rewrite) {
  side.finished = true;
  std::lock_guard lock(mutex_);
  auto& sides = manifest_.side_files;
  const auto same = std::find_if(sides.begin(), sides.end(), [&](auto& s) { return s.file == side.file; });
  if (same != sides.end())
    *same = std::move(side);
  else
    sides.push_back(std::move(side));
  if (rewrite == Rewrite::now) write();
}

void RunManifest::rewrite() {
  std::lock_guard lock(mutex_);
  write();
}

namespace {

Manifest only_finished(Manifest manifest) {
  std::erase_if(manifest.outputs, [](const ManifestOutput& o) { return !o.finished; });
  std::erase_if(manifest.side_files, [](const ManifestSideFile& s) { return !s.finished; });
  return manifest;
}

}  // namespace

Manifest RunManifest::finished() const& {
  std::lock_guard lock(mutex_);
  return only_finished(manifest_);
}

Manifest RunManifest::finished() && {
  std::lock_guard lock(mutex_);
  return only_finished(std::move(manifest_));
}

// Callers hold the mutex (or are the constructor): one rewrite at a time through the temporary.
void RunManifest::write() const {
  AtomicFile file(path_, temp_);
  write_manifest_file(file, manifest_);
}

std::vector<Fragment> read_fragments(const std::string& folder) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_fragment_name(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::vector<Fragment> fragments;
  for (const std::string& name : names) {
    try {
      std::optional<Manifest> content = read_manifest_file((fs::path(folder) / name).string());
      if (content) fragments.push_back({name, std::move(*content)});
    } catch (const Error&) {
      // Not evidence: the files it would vouch for are simply written again.
    }
  }
  return fragments;
}

}  // namespace shardwise::output
