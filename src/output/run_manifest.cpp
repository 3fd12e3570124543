#include "output/run_manifest.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>
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
    : folder_(folder),
      path_((fs::path(folder) / name).string()),
      temp_(st::temp_path_for((fs::path(folder) / temp_stem).string())),
      texts_(folder),
      manifest_(std::move(start)) {
  manifest_.complete = false;
  for (ManifestOutput& output : manifest_.outputs) {
    if (output.finished) written_[output.file] = texts_.add(output);
    std::vector<ManifestTensor>().swap(output.tensors);  // written without them; `= {}` keeps the capacity
  }
  AtomicFile file(path_, temp_);
  write(file, manifest_);
}

void RunManifest::record(ManifestOutput output, const TensorLines& lines) {
  std::lock_guard lock(mutex_);
  const EntryTexts::Span text = texts_.add(output, lines.tensor ? &lines : nullptr);
  std::vector<ManifestTensor>().swap(output.tensors);  // `= {}` would keep its capacity
  // A file's entry is 10s of thousands of tensors; the next file's, a little larger, would not fit
  // the hole it leaves.
  release_free_memory();
  keep(std::move(output), text);
}

void RunManifest::record(ManifestOutput output, const EntryTexts& from, EntryTexts::Span lines) {
  std::lock_guard lock(mutex_);
  keep(std::move(output), texts_.add(output, from, lines));
}

// Callers hold the mutex.
void RunManifest::keep(ManifestOutput&& output, EntryTexts::Span text) {
  output.finished = true;
  written_[output.file] = text;
  auto& outputs = manifest_.outputs;
  const auto same =
      std::find_if(outputs.begin(), outputs.end(), [&](auto& o) { return o.file == output.file; });
  if (same != outputs.end()) {
    *same = std::move(output);
  } else {
    outputs.push_back(std::move(output));
    std::stable_sort(outputs.begin(), outputs.end(), [](auto& a, auto& b) { return a.rank < b.rank; });
  }
  AtomicFile file(path_, temp_);
  write(file, manifest_);
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
  if (rewrite == Rewrite::later) return;
  AtomicFile file(path_, temp_);
  write(file, manifest_);
}

void RunManifest::rewrite() {
  std::lock_guard lock(mutex_);
  AtomicFile file(path_, temp_);
  write(file, manifest_);
}

namespace {

const ManifestOutput* finished_output(const Manifest& manifest, const plan::OutputFile& planned) {
  for (const ManifestOutput& entry : manifest.outputs) {
    if (entry.finished && entry.rank == planned.rank && entry.file == planned.file) return &entry;
  }
  return nullptr;
}

const ManifestSideFile* finished_side_file(const Manifest& manifest, const std::string& name) {
  for (const ManifestSideFile& side : manifest.side_files) {
    if (side.finished && side.file == name) return &side;
  }
  return nullptr;
}

Manifest only_finished(Manifest manifest) {
  std::erase_if(manifest.outputs, [](const ManifestOutput& o) { return !o.finished; });
  std::erase_if(manifest.side_files, [](const ManifestSideFile& s) { return !s.finished; });
  return manifest;
}

}  // namespace

// The run's own entries were made from the plan (or found to fit it when kept, see find_entry):
// a finished entry of the planned rank and file lists the planned tensors.
bool RunManifest::covers(const plan::Plan& plan) const {
  std::lock_guard lock(mutex_);
  for (const plan::OutputFile& planned : plan.outputs) {
    if (finished_output(manifest_, planned) == nullptr) return false;
  }
  for (const std::string& name : plan::extra_file_names(plan)) {
    if (finished_side_file(manifest_, name) == nullptr) return false;
  }
  return true;
}

std::vector<bool> RunManifest::outputs_missing(const plan::Plan& plan) const {
  std::lock_guard lock(mutex_);
  std::vector<bool> missing(plan.outputs.size());
  for (std::size_t i = 0; i < plan.outputs.size(); ++i)
    missing[i] = finished_output(manifest_, plan.outputs[i]) == nullptr;
  return missing;
}

Manifest RunManifest::write_complete(const plan::Plan& plan, const std::string& writer,
                                     const EarlierEntries* earlier,
                                     const std::vector<ManifestSideFile>& side_files) const {
  std::lock_guard lock(mutex_);
  Manifest complete = without_entries(manifest_);
  complete.complete = true;
  // Where each output's text comes from: this run's store, or `earlier`'s lines.
  std::vector<const EarlierEntries::Entry*> from_earlier;
  for (std::size_t i = 0; i < plan.outputs.size(); ++i) {
    const plan::OutputFile& planned = plan.outputs[i];
    const ManifestOutput* entry = finished_output(manifest_, planned);
    const EarlierEntries::Entry* other = nullptr;
    if (entry == nullptr && earlier != nullptr && earlier->found(i)) other = &*earlier->found(i);
    if (entry == nullptr && other == nullptr)
      throw std::logic_error("completing a manifest without every output file");
    complete.outputs.push_back(entry != nullptr ? *entry : other->fields);
    complete.outputs.back().finished = true;
    from_earlier.push_back(other);
  }
  for (const std::string& name : plan::extra_file_names(plan)) {
    const ManifestSideFile* side = finished_side_file(manifest_, name);
    if (side == nullptr) {
      const auto other =
          std::find_if(side_files.begin(), side_files.end(), [&](auto& s) { return s.file == name; });
      if (other != side_files.end()) side = &*other;
    }
    if (side == nullptr) throw std::logic_error("completing a manifest without every side file");
    complete.side_files.push_back(*side);
  }
  AtomicFile file((fs::path(folder_) / kManifestFileName).string(), manifest_temp_path(folder_, writer));
  write(file, complete, from_earlier, earlier);
  return complete;
}

Manifest RunManifest::finished() const {
  std::lock_guard lock(mutex_);
  return only_finished(manifest_);
}

// Callers hold the mutex (or are the constructor): one rewrite at a time through the temporary.
// The outputs with checksums come from texts_, or where from_earlier[i] is set from `earlier`'s
// lines; the rest is formatted here.
void RunManifest::write(AtomicFile& file, const Manifest& manifest,
                        std::span<const EarlierEntries::Entry* const> from_earlier,
                        const EarlierEntries* earlier) const {
  std::string text = format_manifest_head(manifest);
  const auto flush = [&] {
    file.write(std::as_bytes(std::span(text)));
    text.clear();
  };
  for (std::size_t i = 0; i < manifest.outputs.size(); ++i) {
    const ManifestOutput& output = manifest.outputs[i];
    if (i != 0) text += ",";
    if (!has_checksums(manifest, output)) {
      format_output_entry(output, false, [&](std::string_view part) { text += part; });
      continue;
    }
    if (i < from_earlier.size() && from_earlier[i] != nullptr) {
      text += format_entry_opening(output);
      flush();
      earlier->store().copy_to(from_earlier[i]->lines, file);
      text += kEntryClosing;
      continue;
    }
    const auto written = written_.find(output.file);
    if (written == written_.end())
      throw std::logic_error(fmt::format("no text recorded for {}'s manifest entry", output.file));
    flush();
    texts_.copy_to(written->second, file);
  }
  text += format_manifest_tail(manifest);
  flush();
  file.commit();
}

std::vector<std::string> fragment_names(const std::string& folder) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_fragment_name(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<Fragment> read_fragments(const std::string& folder) {
  std::vector<Fragment> fragments;
  for (const std::string& name : fragment_names(folder)) {
    try {
      // The fields and file lists only: a fragment's tensors are 10,000s of entries.
      std::optional<Manifest> content = read_manifest_file(
          (fs::path(folder) / name).string(), {[](std::size_t, const std::string&, ManifestTensor&&) {}});
      if (content) fragments.push_back({name, std::move(*content)});
    } catch (const Error&) {
      // Not evidence: the files it would vouch for are simply written again.
    }
  }
  return fragments;
}

}  // namespace shardwise::output
