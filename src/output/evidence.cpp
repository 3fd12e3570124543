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
    evidence.manifest = read_manifest(folder);
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

bool entry_fits(const ManifestOutput& entry, const plan::OutputFile& planned) {
  if (entry.rank != planned.rank || entry.file != planned.file ||
      entry.tensors.size() != planned.tensors.size()) {
    return false;
  }
  for (std::size_t i = 0; i < planned.tensors.size(); ++i) {
    if (entry.tensors[i].name != planned.tensors[i].name) return false;
  }
  return true;
}

std::vector<const Manifest*> same_plan_sources(const Evidence& evidence, const Manifest& now,
                                               const Manifest* own) {
  std::vector<const Manifest*> sources;
  if (own != nullptr) sources.push_back(own);
  if (evidence.manifest && plan_changes(*evidence.manifest, now).empty())
    sources.push_back(&*evidence.manifest);
  for (const Fragment& fragment : evidence.fragments) {
    if (plan_changes(fragment.content, now).empty()) sources.push_back(&fragment.content);
  }
  return sources;
}

const ManifestOutput* find_entry(const std::vector<const Manifest*>& sources,
                                 const plan::OutputFile& planned) {
  for (const Manifest* source : sources) {
    for (const ManifestOutput& entry : source->outputs) {
      if (has_checksums(*source, entry) && entry_fits(entry, planned)) return &entry;
    }
  }
  return nullptr;
}

namespace {

const ManifestSideFile* find_side_file(const std::vector<const Manifest*>& sources, const std::string& name) {
  for (const Manifest* source : sources) {
    for (const ManifestSideFile& side : source->side_files) {
      if (has_checksums(*source, side) && side.file == name) return &side;
    }
  }
  return nullptr;
}

}  // namespace

namespace {

// True when `own` has an entry with checksums for every output and extra file of `plan`.
bool covers_plan(const plan::Plan& plan, const Manifest& own) {
  const std::vector<const Manifest*> sources{&own};
  for (const plan::OutputFile& planned : plan.outputs) {
    if (find_entry(sources, planned) == nullptr) return false;
  }
  for (const std::string& name : plan::extra_file_names(plan)) {
    if (find_side_file(sources, name) == nullptr) return false;
  }
  return true;
}

}  // namespace

namespace {

// Removes the fragments of the plan `own` describes, now folded into the folder's manifest.
void remove_folded_fragments(const std::string& folder, const std::vector<Fragment>& fragments,
                             const Manifest& own) {
  for (const Fragment& fragment : fragments) {
    if (!plan_changes(fragment.content, own).empty()) continue;
    const std::string path = (fs::path(folder) / fragment.name).string();
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_os_error("cannot remove", path, errno);
  }
}

}  // namespace

Completion complete_manifest(const plan::Plan& plan, const std::string& folder, const Manifest& own,
                             const std::string& writer) {
  // When this run's own entries cover the plan, the folder's manifest (written by this run, or
  // replaced by it) adds nothing: only the fragments are read, to remove those folded in.
  Evidence evidence;
  if (covers_plan(plan, own)) {
    evidence.fragments = read_fragments(folder);
  } else {
    evidence = read_evidence(folder);
  }
  const std::vector<const Manifest*> sources = same_plan_sources(evidence, own, &own);
  Completion result;
  std::vector<const ManifestOutput*> entries;
  for (const plan::OutputFile& planned : plan.outputs) {
    const ManifestOutput* entry = find_entry(sources, planned);
    if (entry == nullptr)
      result.missing_ranks.push_back(planned.rank);
    else
      entries.push_back(entry);
  }
  std::vector<ManifestSideFile> side_files;
  for (const std::string& name : plan::extra_file_names(plan)) {
    const ManifestSideFile* side = find_side_file(sources, name);
    if (side == nullptr)
      result.missing_side_files = true;
    else
      side_files.push_back(*side);
  }
  if (!result.missing_ranks.empty() || result.missing_side_files) return result;

  result.manifest = without_entries(own);
  result.manifest.complete = true;
  result.manifest.side_files = std::move(side_files);
  for (const ManifestOutput* entry : entries) result.manifest.outputs.push_back(*entry);
  write_manifest(folder, result.manifest, writer);
  result.written = true;
  remove_folded_fragments(folder, evidence.fragments, own);
  return result;
}

Completion completed_from(const plan::Plan& plan, const std::string& folder, const RunManifest& own) {
  std::optional<Manifest> manifest;
  try {
    manifest = read_manifest(folder);
  } catch (const Error&) {
    manifest.reset();
  }
  if (!manifest || !manifest->complete || !plan_changes(*manifest, own.finished()).empty() ||
      !covers_plan(plan, *manifest)) {
    throw Error(ErrorKind::io,
                fmt::format("{}: this run's record of its files is gone, and the folder's manifest does not "
                            "list them: rerun with --resume",
                            own.path()));
  }
  Completion result;
  result.written = true;
  result.manifest = std::move(*manifest);
  for (ManifestOutput& output : result.manifest.outputs) std::vector<ManifestTensor>().swap(output.tensors);
  return result;
}

Completion complete_manifest(const plan::Plan& plan, const std::string& folder, const RunManifest& own,
                             const std::string& writer) {
  if (!own.covers(plan)) {
    const std::optional<Manifest> finished = own.finished_with_tensors();
    if (!finished) return completed_from(plan, folder, own);
    return complete_manifest(plan, folder, *finished, writer);
  }
  const std::vector<Fragment> fragments = read_fragments(folder);
  Completion result;
  result.manifest = own.write_complete(plan, writer);
  result.written = true;
  remove_folded_fragments(folder, fragments, result.manifest);
  return result;
}

}  // namespace shardwise::output
