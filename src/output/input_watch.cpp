#include <shardwise/output/input_watch.hpp>

#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/error.hpp>

namespace shardwise::output {

namespace fs = std::filesystem;

namespace {

FileIdentity identity_now(const std::string& path) {
  const std::optional<FileIdentity> identity = identity_of_path(path);
  if (!identity) throw Error(ErrorKind::input, fmt::format("the input file {} is missing", path));
  return *identity;
}

}  // namespace

InputWatch::InputWatch(const plan::Plan& plan) {
  // Tensor files by file name (they sit in the input folder, as input_headers_xxh3 names them),
  // side files by their name there.
  for (std::size_t i = 0; i < plan.input_files.size(); ++i) {
    const std::string& path = plan.input_files[i];
    files_.push_back({path, fs::path(path).filename().string(),
                      i < plan.input_identities.size() ? plan.input_identities[i] : identity_now(path)});
  }
  for (std::size_t i = 0; i < plan.side_files.size(); ++i) {
    const std::string path = (fs::path(plan.input_root) / plan.side_files[i]).string();
    files_.push_back(
        {path, plan.side_files[i],
         i < plan.side_file_identities.size() ? plan.side_file_identities[i] : identity_now(path)});
  }
  // A generated file is computed from an input file (the mirrored index from the input's index),
  // or from the plan alone (a Hugging Face index: nothing more to watch).
  for (const plan::GeneratedFile& file : plan.generated_files) {
    if (file.from.empty()) continue;
    files_.push_back({(fs::path(plan.input_root) / file.from).string(), file.from, file.from_identity});
  }
}

void InputWatch::check() const {
  Diagnostics changed(ErrorKind::input);
  for (const Watched& file : files_) {
    const std::optional<FileIdentity> now = identity_of_path(file.path);
    if (!now) {
      changed.add(fmt::format("{}: removed", file.path));
      continue;
    }
    const std::vector<std::string> changes = identity_changes(file.identity, *now);
    if (!changes.empty()) changed.add(fmt::format("{}: {}", file.path, fmt::join(changes, ", ")));
  }
  changed.check(
      "input files changed while the conversion read them (a download or sync still running?); the output "
      "made from them cannot be trusted and the manifest is not completed: convert again once they are "
      "final");
}

std::vector<ManifestInput> InputWatch::record() const {
  std::vector<ManifestInput> inputs;
  inputs.reserve(files_.size());
  for (const Watched& file : files_) inputs.push_back({file.name, file.identity});
  return inputs;
}

}  // namespace shardwise::output
