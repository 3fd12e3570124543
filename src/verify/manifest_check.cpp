#include "verify/manifest_check.hpp"

#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/output/checksum.hpp>

namespace shardwise::verify {

const std::uint64_t* ScannedOutput::find(std::string_view name) const {
  const auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                                   [](const auto& entry, std::string_view key) { return entry.first < key; });
  return it != tensors.end() && it->first == name ? &it->second : nullptr;
}

void ScannedOutput::add_tensors(std::span<const st::TensorInfo> header,
                                const std::vector<std::uint64_t>& digests) {
  tensors.reserve(tensors.size() + header.size());
  for (std::size_t i = 0; i < header.size(); ++i) tensors.emplace_back(header[i].name, digests[i]);
  sort();
}

void ScannedOutput::sort() {
  const auto by_name = [](const auto& a, const auto& b) { return a.first < b.first; };
  if (!std::is_sorted(tensors.begin(), tensors.end(), by_name))
    std::sort(tensors.begin(), tensors.end(), by_name);
}

namespace {

using output::xxh3_hex;

std::string differs(std::uint64_t expected, std::uint64_t found) {
  return fmt::format("(expected xxh3 {}, found {})", xxh3_hex(expected), xxh3_hex(found));
}

}  // namespace

output::TensorVisitor StreamedComparison::visitor() {
  return {[this](std::size_t output, const std::string& file, output::ManifestTensor&& tensor) {
            add(output, file, std::move(tensor));
          },
          [this] { entries_.clear(); }};
}

void StreamedComparison::add(std::size_t output, const std::string& file, output::ManifestTensor&& tensor) {
  if (entries_.size() <= output) entries_.resize(output + 1);
  Entry& entry = entries_[output];
  if (entry.listed++ == 0) {
    const auto it = disk_.outputs.find(file);
    if (it != disk_.outputs.end()) {
      entry.found = &it->second;
      entry.seen.assign(it->second.tensors.size(), false);
    }
  }
  if (entry.found == nullptr) return;
  const auto& tensors = entry.found->tensors;
  const auto it = std::lower_bound(tensors.begin(), tensors.end(), std::string_view(tensor.name),
                                   [](const auto& e, std::string_view key) { return e.first < key; });
  if (it == tensors.end() || it->first != tensor.name) {
    entry.differences.push_back({std::move(tensor.name), tensor.xxh3, std::nullopt});
    return;
  }
  entry.seen[static_cast<std::size_t>(it - tensors.begin())] = true;
  if (it->second != tensor.xxh3)
    entry.differences.push_back({std::move(tensor.name), tensor.xxh3, it->second});
}

std::size_t StreamedComparison::listed(std::size_t output) const {
  return output < entries_.size() ? entries_[output].listed : 0;
}

void StreamedComparison::finish(const output::Manifest& manifest, Findings& findings) const {
  const bool sole = role_ == ManifestRole::sole_reference;
  for (std::size_t i = 0; i < manifest.outputs.size(); ++i) {
    const output::ManifestOutput& listed = manifest.outputs[i];
    const auto disk = disk_.outputs.find(listed.file);
    if (disk == disk_.outputs.end()) continue;
    const ScannedOutput& found = disk->second;
    const Entry none;
    const Entry& entry = i < entries_.size() ? entries_[i] : none;
    for (const Difference& d : entry.differences) {
      if (!sole && findings.has(listed.file, d.name)) continue;
      if (!d.found) {
        findings.add(
            listed.file, d.name,
            sole ? "missing (the manifest lists it)" : "listed in the manifest, but not in the file");
      } else {
        findings.add(
            listed.file, d.name,
            sole ? "bytes differ from the manifest " + differs(d.expected, *d.found)
                 : fmt::format("the manifest records xxh3 {}, but the tensor (which matches its source) "
                               "has {}: the manifest is stale",
                               xxh3_hex(d.expected), xxh3_hex(*d.found)));
      }
    }
    for (std::size_t t = 0; t < found.tensors.size(); ++t) {
      const std::string name(found.tensors[t].first);
      if ((t < entry.seen.size() && entry.seen[t]) || (!sole && findings.has(listed.file, name))) continue;
      findings.add(listed.file, name,
                   sole ? "unexpected tensor (not in the manifest)" : "not listed in the manifest");
    }
    // A different size or whole-file checksum is only news when no finding above explains it (e.g.
    // a header edit).
    if (found.size != listed.bytes && !findings.has(listed.file)) {
      findings.add(listed.file,
                   fmt::format("{} bytes, but the manifest records {}", found.size, listed.bytes));
    }
    if (found.whole != listed.xxh3 && !findings.has(listed.file)) {
      findings.add(listed.file, sole ? "file differs from the manifest " + differs(listed.xxh3, found.whole)
                                     : fmt::format("the manifest records xxh3 {} for the file, but it has {}",
                                                   xxh3_hex(listed.xxh3), xxh3_hex(found.whole)));
    }
  }
  for (const output::ManifestSideFile& side : manifest.side_files) {
    const auto it = disk_.side_files.find(side.file);
    if (it == disk_.side_files.end() || it->second == side.xxh3) continue;
    if (sole) {
      findings.add(side.file, "side file differs from the manifest " + differs(side.xxh3, it->second));
    } else if (!findings.has(side.file)) {
      findings.add(side.file,
                   fmt::format("the manifest records xxh3 {}, but the side file (identical to the input's) "
                               "has {}: the manifest is stale",
                               xxh3_hex(side.xxh3), xxh3_hex(it->second)));
    }
  }
}

namespace {

void compare_params(const output::Manifest& manifest, const plan::Plan& plan, Findings& findings) {
  const std::string file = output::kManifestFileName;
  const std::map<std::string, std::string> recorded = output::param_texts(manifest, plan.param_choices);
  for (const auto& [name, value] : plan.params) {
    const auto it = recorded.find(name);
    const std::string now = plan::param_value_text(plan, name, value);
    if (it == recorded.end()) {
      findings.add(file,
                   fmt::format("parameter {} is {} now, but the manifest does not record it", name, now));
    } else if (it->second != now) {
      findings.add(file,
                   fmt::format("parameter {} is {} now, but {} in the manifest", name, now, it->second));
    }
  }
  for (const auto& [name, value] : recorded) {
    if (plan.params.count(name) == 0) {
      findings.add(file, fmt::format("records parameter {}={}, which the rules do not have", name, value));
    }
  }
}

// Reports names in one list and not the other.
void compare_names(const std::vector<std::string>& listed, const std::vector<std::string>& planned,
                   const std::string& what, Findings& findings) {
  const std::set<std::string> a(listed.begin(), listed.end());
  const std::set<std::string> b(planned.begin(), planned.end());
  for (const std::string& name : a) {
    if (b.count(name) == 0)
      findings.add(output::kManifestFileName,
                   fmt::format("lists {} {}, which the plan does not have", what, name));
  }
  for (const std::string& name : b) {
    if (a.count(name) == 0)
      findings.add(output::kManifestFileName, fmt::format("does not list planned {} {}", what, name));
  }
}

}  // namespace

void compare_manifest_with_plan(const output::Manifest& manifest, const plan::Plan& plan,
                                const output::RulesIdentity& rules, std::uint64_t headers_xxh3,
                                Findings& findings) {
  const std::string file = output::kManifestFileName;
  if (!manifest.complete) {
    findings.add(
        file,
        "incomplete (\"complete\": false): the conversion that wrote it was interrupted; convert again");
  }
  if (manifest.rules.name != rules.name || manifest.rules.xxh3 != rules.xxh3) {
    findings.add(
        file,
        fmt::format("written with rules '{}' (xxh3 {}), but verifying with rules '{}' (xxh3 {})",
                    manifest.rules.name, xxh3_hex(manifest.rules.xxh3), rules.name, xxh3_hex(rules.xxh3)));
  }
  if (manifest.input_headers_xxh3 != headers_xxh3) {
    findings.add(file,
                 fmt::format("the input's headers changed since the conversion (xxh3 {} recorded, {} now)",
                             xxh3_hex(manifest.input_headers_xxh3), xxh3_hex(headers_xxh3)));
  }
  compare_params(manifest, plan, findings);
  std::vector<std::string> listed;
  std::vector<std::string> planned;
  for (const output::ManifestOutput& o : manifest.outputs) listed.push_back(o.file);
  for (const plan::OutputFile& o : plan.outputs) planned.push_back(o.file);
  compare_names(listed, planned, "output file", findings);
  listed.clear();
  for (const output::ManifestSideFile& s : manifest.side_files) listed.push_back(s.file);
  compare_names(listed, plan::extra_file_names(plan), "side file", findings);
}

std::vector<std::string> input_changes(const output::Manifest& manifest, const plan::Plan& plan) {
  if (manifest.inputs.empty()) {
    return {
        "the manifest (written by an older shardwise) does not record the input files' sizes and times: "
        "whether they changed since the conversion is not known"};
  }
  std::map<std::string, FileIdentity> now;
  for (std::size_t i = 0; i < plan.input_files.size() && i < plan.input_identities.size(); ++i) {
    now[std::filesystem::path(plan.input_files[i]).filename().string()] = plan.input_identities[i];
  }
  for (std::size_t i = 0; i < plan.side_files.size() && i < plan.side_file_identities.size(); ++i) {
    now[plan.side_files[i]] = plan.side_file_identities[i];
  }
  for (const plan::GeneratedFile& file : plan.generated_files) {
    if (!file.from.empty()) now[file.from] = file.from_identity;
  }
  std::vector<std::string> lines;
  for (const output::ManifestInput& input : manifest.inputs) {
    const auto found = now.find(input.file);
    if (found == now.end()) {
      lines.push_back(fmt::format("{} was an input of the conversion and is not one now", input.file));
      continue;
    }
    const std::vector<std::string> changes = identity_changes(input.identity, found->second);
    if (!changes.empty()) {
      lines.push_back(
          fmt::format("{} changed since the conversion: {}", input.file, fmt::join(changes, ", ")));
    }
  }
  return lines;
}

}  // namespace shardwise::verify
