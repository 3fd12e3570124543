#include <shardwise/core/paths.hpp>

#include <filesystem>
#include <string>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

namespace shardwise {

namespace fs = std::filesystem;

namespace {

// True when `inner` is below `outer` (both canonical).
bool is_below(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (i == inner.end() || *i != *o) return false;
  }
  return i != inner.end();
}

// `folder` is a Hugging Face cache's snapshot (`.../snapshots/REV`) and `target` one of the blobs
// beside it (`.../blobs/HASH`).
bool is_cache_blob(const fs::path& folder, const fs::path& target) {
  const fs::path snapshots = folder.parent_path();
  if (snapshots.filename() != "snapshots") return false;
  return target.parent_path() == snapshots.parent_path() / "blobs";
}

// What the descriptor was opened on, as the kernel names it; empty when it cannot tell.
fs::path opened_path(int fd) {
  std::error_code ec;
  fs::path path = fs::read_symlink(fmt::format("/proc/self/fd/{}", fd), ec);
  return ec || !path.is_absolute() ? fs::path() : path;
}

}  // namespace

std::string file_name_problem(std::string_view name) {
  if (name.empty()) return "an empty name";
  if (name == "." || name == "..") return fmt::format("'{}', a folder", name);
  if (name.find('\0') != std::string_view::npos) return "a name with a NUL byte";
  if (name.find('/') != std::string_view::npos) return "a path, not a file name";
  return "";
}

std::optional<std::string> outside_target(const std::string& folder, const std::string& name, int fd) {
  std::error_code ec;
  const fs::path root = fs::canonical(folder, ec);
  if (ec) return std::nullopt;  // the folder itself cannot be resolved: its own open reports why
  fs::path target = fd >= 0 ? opened_path(fd) : fs::path();
  if (target.empty()) {
    target = fs::canonical(fs::path(folder) / name, ec);
    if (ec) return std::nullopt;
  }
  if (is_below(target, root) || is_cache_blob(root, target)) return std::nullopt;
  return target.string();
}

void check_inside_folder(const std::string& folder, const std::string& name, OutsideLinks links, int fd) {
  if (links == OutsideLinks::allow) return;
  const std::optional<std::string> target = outside_target(folder, name, fd);
  if (!target) return;
  throw Error(
      ErrorKind::input,
      fmt::format("{}: leads outside its folder {} (to {}): shardwise reads nothing outside the folders "
                  "it is given; copy the file into the folder, or pass --allow-outside-links",
                  (fs::path(folder) / name).string(), folder, *target));
}

}  // namespace shardwise
