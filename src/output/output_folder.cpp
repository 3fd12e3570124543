#include "output/output_folder.hpp"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>
#include <vector>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/safetensors/writer.hpp>

#include "output/evidence.hpp"

namespace shardwise::output {

namespace fs = std::filesystem;

namespace {

fs::path canonical_or_throw(const std::string& path, bool weakly) {
  std::error_code ec;
  fs::path result = weakly ? fs::weakly_canonical(path, ec) : fs::canonical(path, ec);
  if (ec) throw Error(ErrorKind::io, fmt::format("cannot resolve {}: {}", path, ec.message()));
  return result;
}

// True when `inner` is `outer` or below it (both canonical).
bool is_within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// Files a shardwise manifest or fragment in `folder` says shardwise wrote (the manifest included).
// A file that is not a valid manifest proves nothing, so it owns nothing either.
std::set<std::string> files_shardwise_wrote(const fs::path& folder) {
  std::set<std::string> owned;
  Evidence evidence;
  try {
    // Its file lists: the tensors' entries (100,000s in a full-size model) are not needed here.
    evidence.manifest = read_manifest_without_tensors(folder.string());
  } catch (const Error&) {
    evidence.manifest.reset();
  }
  evidence.fragments = read_fragments(folder.string());
  std::vector<const Manifest*> sources;
  if (evidence.manifest) {
    owned.insert(kManifestFileName);
    sources.push_back(&*evidence.manifest);
  }
  for (const Fragment& fragment : evidence.fragments) sources.push_back(&fragment.content);
  for (const Manifest* source : sources) {
    for (const ManifestOutput& output : source->outputs) owned.insert(output.file);
    for (const ManifestSideFile& side : source->side_files) owned.insert(side.file);
  }
  return owned;
}

void remove_stale(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_os_error("cannot remove stale", path, errno);
}

// Every temporary of a manifest or fragment (`.shardwise-manifest.*.partial`), whichever run
// named it.
void remove_all_manifest_temporaries(const fs::path& out) {
  const std::string_view prefix = ".shardwise-manifest.";
  const std::string_view suffix = ".partial";
  std::error_code ec;
  std::vector<std::string> stale;
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() > prefix.size() + suffix.size() && name.rfind(prefix, 0) == 0 &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      stale.push_back((out / name).string());
    }
  }
  for (const std::string& path : stale) remove_stale(path);
}

void refuse_foreign_files(const fs::path& out, const std::vector<std::string>& names) {
  // Which files exist is looked at before the manifests are read: another process of the same job
  // may complete the manifest meanwhile, and a file that appears after its evidence was read would
  // look foreign.
  std::vector<std::string> existing;
  for (const std::string& name : names) {
    std::error_code ec;
    if (fs::exists(out / name, ec)) existing.push_back(name);
  }
  if (existing.empty()) return;
  const std::set<std::string> owned = files_shardwise_wrote(out);
  std::vector<std::string> foreign;
  for (const std::string& name : existing) {
    if (owned.count(name) == 0) foreign.push_back(name);
  }
  if (foreign.empty()) return;
  throw Error(
      ErrorKind::io,
      fmt::format("the output folder {} holds {} file{} that shardwise did not write and would overwrite: "
                  "{} (no shardwise manifest there lists {}); pass --force to overwrite",
                  out.string(), foreign.size(), foreign.size() == 1 ? "" : "s", fmt::join(foreign, ", "),
                  foreign.size() == 1 ? "it" : "them"));
}

}  // namespace

PreparedFolder prepare_output_folder(const plan::Plan& plan, const std::string& output_dir,
                                     Overwrite overwrite, const FolderClaim& claim) {
  const fs::path in = canonical_or_throw(plan.input_root, false);
  const fs::path out = canonical_or_throw(output_dir, true);
  if (out == in) {
    throw Error(ErrorKind::io,
                fmt::format("the output folder {} is the input folder: choose another one", output_dir));
  }
  if (is_within(out, in)) {
    throw Error(ErrorKind::io,
                fmt::format("the output folder {} is inside the input folder {}: choose one outside it",
                            output_dir, in.string()));
  }
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) {
    throw Error(ErrorKind::io, fmt::format("the output path {} exists and is not a folder", output_dir));
  }
  fs::create_directories(out, ec);
  if (ec)
    throw Error(ErrorKind::io,
                fmt::format("cannot create the output folder {}: {}", output_dir, ec.message()));
  PreparedFolder prepared{out.string(), std::make_unique<FolderLock>(out.string(), claim.ranks, claim.whole)};

  if (overwrite != Overwrite::force) refuse_foreign_files(out, claim.files);
  for (const auto* names : {&claim.files, &claim.own_temporaries}) {
    for (const std::string& name : *names) remove_stale(st::temp_path_for((out / name).string()));
  }
  if (claim.whole) remove_all_manifest_temporaries(out);
  return prepared;
}

}  // namespace shardwise::output
