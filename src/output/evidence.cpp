#include "output/evidence.hpp"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

namespace shardwise::output {

namespace fs = std::filesystem;

Evidence read_evidence(const std::string& folder) {
  Evidence evidence;
  try {
    evidence.manifest = read_manifest_without_tensors(folder);
  } catch (const Error&) {
    evidence.manifest.reset();
  }
  evidence.fragments = read_fragments(folder);
  return evidence;
}

void check_resumable(const Evidence& evidence, const Manifest& now, const plan::Plan& plan,
                     const std::string& folder) {
  const auto refuse_if_changed = [&](const Manifest& before, const std::string& name) {
    const std::vector<std::string> changes = plan_changes(before, now, &plan);
    if (changes.empty()) return;
    throw Error(ErrorKind::io,
                fmt::format("cannot resume: {} (since {} was written; convert without --resume to "
                            "start over)",
                            fmt::join(changes, "; "), (fs::path(folder) / name).string()));
  };
  if (evidence.manifest) {
    refuse_if_changed(*evidence.manifest, kManifestFileName);
    return;
  }
  for (const Fragment& fragment : evidence.fragments) refuse_if_changed(fragment.content, fragment.name);
}

namespace {

// Removes the fragments of the plan `complete` describes, now folded into the folder's manifest.
void remove_folded_fragments(const std::string& folder, const std::vector<Fragment>& fragments,
                             const Manifest& complete) {
  for (const Fragment& fragment : fragments) {
    if (!plan_changes(fragment.content, complete).empty()) continue;
    const std::string path = (fs::path(folder) / fragment.name).string();
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_os_error("cannot remove", path, errno);
  }
}

// Reads `path` into `earlier`: its fields, or nullopt when it is gone or not a valid manifest (it
// proves nothing then).
std::optional<Manifest> read_into(EarlierEntries& earlier, const std::string& path, const Manifest& now) {
  try {
    return earlier.read(path, now);
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace

void read_earlier_entries(EarlierEntries& earlier, const std::string& folder, const Evidence& evidence,
                          const Manifest& now) {
  if (evidence.manifest && plan_changes(*evidence.manifest, now).empty())
    read_into(earlier, (fs::path(folder) / kManifestFileName).string(), now);
  for (const Fragment& fragment : evidence.fragments) {
    if (plan_changes(fragment.content, now).empty())
      read_into(earlier, (fs::path(folder) / fragment.name).string(), now);
  }
}

Completion complete_manifest(const plan::Plan& plan, const std::string& folder, const RunManifest& own,
                             const std::string& writer, const EarlierEntries::ListOf& list_of) {
  Completion result;
  if (own.covers(plan)) {
    const std::vector<Fragment> fragments = read_fragments(folder);
    result.manifest = own.write_complete(plan, writer);
    result.written = true;
    remove_folded_fragments(folder, fragments, result.manifest);
    return result;
  }
  // The outputs and side files this run has no entry of, from the folder's manifest, then the
  // fragments in name order (the run's own record aside: what it lists, the run has).
  const Manifest mine = own.finished();
  const std::vector<bool> missing = own.outputs_missing(plan);
  EarlierEntries earlier(folder, plan, missing, list_of);
  const std::optional<Manifest> manifest =
      read_into(earlier, (fs::path(folder) / kManifestFileName).string(), mine);
  std::vector<Fragment> fragments;
  for (const std::string& name : fragment_names(folder)) {
    if (name == fs::path(own.path()).filename().string()) {
      fragments.push_back({name, mine});  // removed with the others once folded in
      continue;
    }
    if (auto content = read_into(earlier, (fs::path(folder) / name).string(), mine))
      fragments.push_back({name, std::move(*content)});
  }
  for (std::size_t i = 0; i < plan.outputs.size(); ++i) {
    if (missing[i] && !earlier.found(i)) result.missing_ranks.push_back(plan.outputs[i].rank);
  }
  // The side files the run has not recorded, from the first record of the same plan that has them.
  const auto recorded = [&](const Manifest& source, const std::string& name) -> const ManifestSideFile* {
    for (const ManifestSideFile& side : source.side_files) {
      if (has_checksums(source, side) && side.file == name) return &side;
    }
    return nullptr;
  };
  std::vector<const Manifest*> sources;
  if (manifest && plan_changes(*manifest, mine).empty()) sources.push_back(&*manifest);
  for (const Fragment& fragment : fragments) {
    if (plan_changes(fragment.content, mine).empty()) sources.push_back(&fragment.content);
  }
  std::vector<ManifestSideFile> side_files;
  for (const std::string& name : plan::extra_file_names(plan)) {
    if (recorded(mine, name) != nullptr) continue;
    const ManifestSideFile* side = nullptr;
    for (std::size_t i = 0; side == nullptr && i < sources.size(); ++i) side = recorded(*sources[i], name);
    if (side == nullptr)
      result.missing_side_files = true;
    else
      side_files.push_back(*side);
  }
  if (!result.missing_ranks.empty() || result.missing_side_files) return result;
  result.manifest = own.write_complete(plan, writer, &earlier, side_files);
  result.written = true;
  remove_folded_fragments(folder, fragments, result.manifest);
  return result;
}

}  // namespace shardwise::output
