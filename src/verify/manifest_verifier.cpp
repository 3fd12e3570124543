// verify_manifest: the output folder against its shardwise-manifest.json alone (the input is not
// read).
#include <chrono>
#include <filesystem>
#include <optional>
#include <set>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/verify/verifier.hpp>

#include <shardwise/core/parallel.hpp>
#include "verify/buffers.hpp"
#include "verify/findings.hpp"
#include "verify/folder.hpp"
#include "verify/manifest_check.hpp"
#include "verify/scan.hpp"

namespace shardwise::verify {

namespace {

namespace fs = std::filesystem;

// The manifest without its tensors' entries (`listed` counts them per output entry), or nullopt
// after reporting why there is none to verify against.
std::optional<output::Manifest> load(const std::string& out, const std::set<std::string>& present,
                                     std::vector<std::size_t>& listed, Findings& findings) {
  const std::string name = output::kManifestFileName;
  if (present.count(name) == 0) {
    findings.add(name,
                 "missing: nothing to verify against without the input (verify with --hf-ckpt-path instead)");
    return std::nullopt;
  }
  const auto count = [&listed](std::size_t output, const std::string&, output::ManifestTensor&&) {
    if (listed.size() <= output) listed.resize(output + 1);
    ++listed[output];
  };
  try {
    std::optional<output::Manifest> manifest =
        output::read_manifest(out, {count, [&listed] { listed.clear(); }});
    if (manifest && !manifest->complete) {
      findings.add(name,
                   "incomplete (\"complete\": false): the conversion that wrote it was interrupted; "
                   "convert again");
      return std::nullopt;
    }
    return manifest;
  } catch (const Error& e) {
    findings.add(name, message_without_path(e.what(), (fs::path(out) / name).string()));
    return std::nullopt;
  }
}

// Reads the manifest again, comparing its tensors' entries with `disk` as they come.
void compare(const std::string& out, const DiskState& disk, Findings& findings) {
  const std::string name = output::kManifestFileName;
  StreamedComparison comparison(disk, ManifestRole::sole_reference);
  try {
    const std::optional<output::Manifest> manifest = output::read_manifest(out, comparison.visitor());
    if (!manifest) {
      findings.add(name, "removed while the output was verified");
    } else {
      comparison.finish(*manifest, findings);
    }
  } catch (const Error& e) {
    findings.add(name, message_without_path(e.what(), (fs::path(out) / name).string()));
  }
}

struct Target {
  std::string name;
  std::optional<st::File> file;  // output files; side files are hashed by path
};

std::vector<std::string> file_order(const output::Manifest& manifest) {
  std::vector<std::string> order;
  for (const output::ManifestOutput& o : manifest.outputs) order.push_back(o.file);
  for (const output::ManifestSideFile& s : manifest.side_files) order.push_back(s.file);
  return order;
}

// Opens every listed output file; reports those missing or not valid safetensors.
std::vector<Target> open_outputs(const output::Manifest& manifest, const std::vector<std::size_t>& tensors,
                                 const std::string& out, const std::set<std::string>& present,
                                 Findings& findings) {
  std::vector<Target> targets;
  for (std::size_t i = 0; i < manifest.outputs.size(); ++i) {
    const output::ManifestOutput& listed = manifest.outputs[i];
    const std::string path = (fs::path(out) / listed.file).string();
    if (present.count(listed.file) == 0) {
      findings.add(listed.file, fmt::format("missing (the manifest lists it: {} tensors, {} bytes)",
                                            i < tensors.size() ? tensors[i] : 0, listed.bytes));
      continue;
    }
    try {
      targets.push_back({listed.file, st::File::open(path)});
    } catch (const Error& e) {
      findings.add(listed.file, "not a valid safetensors file: " + message_without_path(e.what(), path));
    }
  }
  return targets;
}

// Every side file listed and present becomes a target; missing ones are reported.
void add_side_files(const output::Manifest& manifest, const std::set<std::string>& present,
                    std::vector<Target>& targets, Findings& findings) {
  for (const output::ManifestSideFile& s : manifest.side_files) {
    if (present.count(s.file) == 0) {
      findings.add(s.file, "missing side file (the manifest lists it)");
    } else {
      targets.push_back({s.file, std::nullopt});
    }
  }
}

// Reads every target once, in parallel. A target that cannot be read to its end is reported and
// dropped (its name cleared).
std::vector<FileDigests> read_targets(std::vector<Target>& targets, const std::string& out,
                                      const VerifyOptions& options, VerifyReport& report,
                                      Findings& findings) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (const Target& t : targets)
    total += t.file ? t.file->size() : fs::file_size(fs::path(out) / t.name, ec);
  std::vector<FileDigests> digests(targets.size());
  output::Progress progress(options.progress, total);
  ThreadBuffers buffers(report.threads, buffer_bytes_for(options.buffer_bytes, report.threads));
  const output::PageCache cache = options.page_cache != output::PageCache::automatic ? options.page_cache
                                  : io::exceeds_page_cache(total)                    ? output::PageCache::drop
                                                                  : output::PageCache::keep;
  run_parallel(targets.size(), report.threads, [&](std::size_t i, unsigned worker) {
    progress.set_current(targets[i].name);
    const std::string path = (fs::path(out) / targets[i].name).string();
    try {
      if (targets[i].file) {
        digests[i] = scan_output_file(ScanTarget(*targets[i].file), buffers.main(worker), progress, cache);
      } else {
        digests[i].whole = hash_whole_file(path, buffers.main(worker), progress);
      }
    } catch (const Error& e) {
      findings.add(targets[i].name, "cannot be read: " + message_without_path(e.what(), path));
      targets[i].file.reset();
      targets[i].name.clear();
    }
  });
  progress.finish();
  report.bytes_read = progress.done();
  return digests;
}

DiskState disk_state(const std::vector<Target>& targets, const std::vector<FileDigests>& digests,
                     VerifyReport& report) {
  DiskState disk;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const Target& t = targets[i];
    if (t.name.empty()) continue;
    if (!t.file) {
      disk.side_files[t.name] = digests[i].whole;
      ++report.side_files;
      continue;
    }
    ScannedOutput& scanned = disk.outputs[t.name];
    scanned.size = digests[i].size;
    scanned.whole = digests[i].whole;
    const auto& tensors = t.file->header().tensors;
    scanned.add_tensors(tensors, digests[i].tensors);
    ++report.files;
    report.tensors += tensors.size();
  }
  return disk;
}

}  // namespace

VerifyReport verify_manifest(const VerifyOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::string& out = options.output_dir;
  const std::set<std::string> present = list_folder(out);
  VerifyReport report;
  report.threads = thread_count(options.threads);
  Findings early({});
  std::vector<std::size_t> listed;
  const std::optional<output::Manifest> manifest = load(out, present, listed, early);
  if (!manifest) {
    report.findings = early.sorted();
    return report;
  }
  report.manifest_checked = true;
  Findings findings(file_order(*manifest));
  // A manifest that lists part of the output vouches for nothing: the check reshard makes.
  for (const std::string& problem : output::file_list_problems(*manifest)) {
    findings.add(output::kManifestFileName, problem);
  }
  std::vector<Target> targets = open_outputs(*manifest, listed, out, present, findings);
  add_side_files(*manifest, present, targets, findings);
  std::vector<std::string> ours = file_order(*manifest);
  ours.emplace_back(output::kManifestFileName);
  report_leftover_temporaries(present, ours, findings);

  const std::vector<FileDigests> digests = read_targets(targets, out, options, report, findings);
  compare(out, disk_state(targets, digests, report), findings);
  report.findings = findings.sorted();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace shardwise::verify
