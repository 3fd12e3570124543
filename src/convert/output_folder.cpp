#include "convert/output_folder.hpp"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>
#include <vector>

#include <fmt/format.h>

#include <shardwise/convert/manifest.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/writer.hpp>

namespace shardwise::convert {

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

// Files a shardwise manifest in `folder` says shardwise wrote (the manifest included). A file
// that is not a valid manifest proves nothing, so it owns nothing either.
std::set<std::string> files_shardwise_wrote(const fs::path& folder) {
  std::set<std::string> owned;
  std::optional<Manifest> manifest;
  try {
    manifest = read_manifest(folder.string());
  } catch (const Error&) {
    return owned;
  }
  if (!manifest) return owned;
  owned.insert(kManifestFileName);
  for (const ManifestOutput& output : manifest->outputs) owned.insert(output.file);
  for (const ManifestSideFile& side : manifest->side_files) owned.insert(side.file);
  return owned;
}

std::vector<std::string> names_to_write(const plan::Plan& plan) {
  std::vector<std::string> names;
  for (const plan::OutputFile& output : plan.outputs) names.push_back(output.file);
  names.insert(names.end(), plan.side_files.begin(), plan.side_files.end());
  names.emplace_back(kManifestFileName);
  return names;
}

void refuse_foreign_files(const fs::path& out, const std::vector<std::string>& names) {
  const std::set<std::string> owned = files_shardwise_wrote(out);
  std::vector<std::string> foreign;
  for (const std::string& name : names) {
    std::error_code ec;
    if (fs::exists(out / name, ec) && owned.count(name) == 0) foreign.push_back(name);
  }
  if (foreign.empty()) return;
  throw Error(ErrorKind::io,
              fmt::format("the output folder {} holds {} file{} that shardwise did not write and would overwrite: "
                          "{} (no shardwise manifest there lists {}); pass --force to overwrite",
                          out.string(), foreign.size(), foreign.size() == 1 ? "" : "s", fmt::join(foreign, ", "),
                          foreign.size() == 1 ? "it" : "them"));
}

}  // namespace

std::string prepare_output_folder(const plan::Plan& plan, const std::string& output_dir, Overwrite overwrite) {
  const fs::path in = canonical_or_throw(plan.input_root, false);
  const fs::path out = canonical_or_throw(output_dir, true);
  if (out == in) {
    throw Error(ErrorKind::io, fmt::format("the output folder {} is the input folder: choose another one", output_dir));
  }
  if (is_within(out, in)) {
    throw Error(ErrorKind::io, fmt::format("the output folder {} is inside the input folder {}: choose one outside it",
                                           output_dir, in.string()));
  }
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) {
    throw Error(ErrorKind::io, fmt::format("the output path {} exists and is not a folder", output_dir));
  }
  fs::create_directories(out, ec);
  if (ec) throw Error(ErrorKind::io, fmt::format("cannot create the output folder {}: {}", output_dir, ec.message()));

  const std::vector<std::string> names = names_to_write(plan);
  if (overwrite != Overwrite::force) refuse_foreign_files(out, names);
  for (const std::string& name : names) {
    const std::string stale = st::temp_path_for((out / name).string());
    if (::unlink(stale.c_str()) != 0 && errno != ENOENT) throw_os_error("cannot remove stale", stale, errno);
  }
  return out.string();
}

}  // namespace shardwise::convert
