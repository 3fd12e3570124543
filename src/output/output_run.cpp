#include <shardwise/output/output_run.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/output/checksum.hpp>

#include <shardwise/core/io.hpp>
#include <shardwise/core/parallel.hpp>
#include "output/evidence.hpp"
#include "output/output_folder.hpp"
#include "output/resume.hpp"
#include "output/run_manifest.hpp"
#include "output/side_file.hpp"

namespace shardwise::output {

namespace {

using Clock = std::chrono::steady_clock;

// Process 0 of a distributed job looks for the others' fragments this often.
constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr auto kMinManifestWait = std::chrono::seconds(600);

// Automatic: drop once the bytes read and written (about twice those written) exceed half of
// physical memory: the cache could not keep them for a next run anyway. Smaller runs keep the
// cache as plain reads and writes do (a second run, or verify, finds them warm).
PageCache page_cache_for(PageCache requested, std::uint64_t bytes_written) {
  if (requested != PageCache::automatic) return requested;
  return io::exceeds_page_cache(2 * bytes_written) ? PageCache::drop : PageCache::keep;
}

std::uint64_t side_files_bytes(const plan::Plan& plan) {
  std::uint64_t total = 0;
  for (const std::string& name : plan.side_files) {
    total += io::ReadOnlyFile((std::filesystem::path(plan.input_root) / name).string()).size();
  }
  for (const plan::GeneratedFile& file : plan.generated_files) total += file.content.size();
  return total;
}

// What this run writes, and the names under which it keeps its records.
struct Share {
  std::vector<std::uint64_t> ranks;  // ascending
  bool whole = true;
  bool side_files = true;
  std::string record;  // the manifest file it keeps up to date: the folder's, or its fragment
  std::string writer;  // names its temporary of the folder's manifest ("" for a whole run)
};

Share share_of(const plan::Plan& plan, const RunOptions& options) {
  Share share;
  share.whole = !options.ranks && !options.launch;
  if (options.launch) {
    share.ranks = ranks_of_process(plan, *options.launch);
  } else if (options.ranks) {
    share.ranks = *options.ranks;
    for (const std::uint64_t rank : share.ranks) {
      if (rank >= plan.outputs.size()) {
        throw Error(
            ErrorKind::usage,
            plan.naming != plan::OutputNaming::per_rank
                ? fmt::format("rank {} is out of range: the {} plan has {} output files (ranks 0-{})", rank,
                              plan.naming == plan::OutputNaming::hf ? "Hugging Face layout's" : "mirrored",
                              plan.outputs.size(), plan.outputs.size() - 1)
                : fmt::format("rank {} is out of range (model parallel {})", rank, plan.outputs.size()));
      }
    }
  } else {
    for (const plan::OutputFile& output : plan.outputs) share.ranks.push_back(output.rank);
  }
  share.side_files = !share.ranks.empty() && share.ranks.front() == 0;
  const std::string key = share_key(share.ranks, options.launch ? options.launch->index : 0);
  share.record = share.whole ? kManifestFileName : fragment_name(key);
  share.writer = share.whole ? "" : key;
  return share;
}

FolderClaim claim_of(const plan::Plan& plan, const Share& share) {
  FolderClaim claim;
  for (const std::uint64_t rank : share.ranks) claim.files.push_back(plan.outputs[rank].file);
  if (share.side_files) {
    const std::vector<std::string> extra = plan::extra_file_names(plan);
    claim.files.insert(claim.files.end(), extra.begin(), extra.end());
  }
  claim.files.emplace_back(kManifestFileName);
  if (!share.whole) {
    claim.own_temporaries = {share.record, fmt::format("{}.{}", kManifestFileName, share.writer)};
  }
  claim.whole = share.whole;
  claim.ranks = share.ranks;
  return claim;
}

void remove_file(const std::string& folder, const std::string& name) {
  const std::string path = (std::filesystem::path(folder) / name).string();
  if (std::remove(path.c_str()) != 0 && errno != ENOENT) throw_os_error("cannot remove", path, errno);
}

// Fragments that can no longer help: for a whole run every fragment (its own record, the folder's
// manifest, carries what it keeps); for a partial run those of other plans, whose files this plan
// overwrites.
void retire_fragments(const std::string& folder, const Evidence& evidence, const Manifest& planned,
                      const Share& share) {
  for (const Fragment& fragment : evidence.fragments) {
    if (fragment.name == share.record) continue;
    if (share.whole || !plan_changes(fragment.content, planned).empty()) remove_file(folder, fragment.name);
  }
}

// The folder's records as seen from outside (name, inode, size and modification time of the
// manifest and each fragment): they are read again only when this changes.
std::string records_seen(const std::string& folder) {
  std::vector<std::string> names = fragment_names(folder);
  names.insert(names.begin(), kManifestFileName);
  std::string seen;
  for (const std::string& name : names) {
    struct stat st {};
    if (::stat((std::filesystem::path(folder) / name).c_str(), &st) != 0) continue;
    seen +=
        fmt::format("{} {} {} {}.{}\n", name, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  return seen;
}

// Process 0 of a distributed job: polls until the others' fragments complete the manifest. A try
// reads every record of the others (at Pro's count, 10s of MB of text): it is made again only when
// a record changed.
Completion wait_for_manifest(const plan::Plan& plan, const std::string& folder, const RunManifest& own,
                             const Share& share, const EarlierEntries::ListOf& list_of,
                             std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  std::string tried;
  Completion done;
  for (;;) {
    if (std::string seen = records_seen(folder); seen != tried) {
      tried = std::move(seen);
      done = complete_manifest(plan, folder, own, share.writer, list_of);
    }
    if (done.written) return done;
    if (Clock::now() >= deadline) {
      throw Error(
          ErrorKind::io,
          fmt::format(
              "gave up after {} s waiting for the other processes to write {} into {}: the last "
              "of them to finish completes the manifest; if one failed, rerun the job with --resume",
              limit.count(),
              done.missing_ranks.empty() ? "the side files" : "ranks " + format_rank_list(done.missing_ranks),
              folder));
    }
    if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
    std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace

RunSummary run_outputs(const plan::Plan& plan, const RunOptions& options, const OutputWriter& writer) {
  install_cleanup_handlers();
  // What planning freed goes back to the system before the files are written (the copy threads
  // allocate where it cannot be reused), and so does each large block the run frees.
  release_free_memory();
  give_back_large_blocks();
  const auto start = Clock::now();
  const Share share = share_of(plan, options);
  // Held until the run returns or throws: no other run writes these files meanwhile.
  const PreparedFolder folder =
      prepare_output_folder(plan, options.output_dir, options.overwrite, claim_of(plan, share));
  const std::string& out_dir = folder.path;
  const InputWatch inputs(plan);
  Manifest planned = writer.planned(inputs);
  // Read before anything is written: the records below replace what earlier runs left.
  Evidence evidence = read_evidence(out_dir);
  const bool resume = options.resume == Resume::keep_finished;
  if (resume) check_resumable(evidence, planned, plan, out_dir);

  RunSummary summary;
  summary.ranks = share.ranks;
  summary.whole = share.whole;
  summary.threads = thread_count(options.threads);
  std::vector<FileWork> work = writer.layout(share.ranks, out_dir);
  // The entries earlier runs recorded for this run's files, their tensors kept as text.
  std::optional<EarlierEntries> earlier;
  std::vector<bool> kept(work.size(), false);
  if (resume) {
    std::vector<bool> wanted(plan.outputs.size(), false);
    for (const FileWork& w : work) wanted[w.planned->rank] = true;
    earlier.emplace(out_dir, plan, std::move(wanted), writer.tensor_list);
    read_earlier_entries(*earlier, out_dir, evidence, planned);
    kept = files_to_keep(*earlier, work, summary.threads, options.progress);
  }

  // A whole run's record is the folder's manifest, listing every planned file; a fragment lists
  // only what its run finished. A whole run reads `planned` no more: its entries (every tensor)
  // move into the record instead of being held twice.
  RunManifest run_manifest(out_dir, share.record, share.record,
                           share.whole ? std::move(planned) : without_entries(planned));
  std::vector<FileWork> to_write;
  for (std::size_t i = 0; i < work.size(); ++i) {
    if (kept[i]) {
      const EarlierEntries::Entry& entry = *earlier->found(work[i].planned->rank);
      run_manifest.record(entry.fields, earlier->store(), entry.lines);
    } else {
      to_write.push_back(std::move(work[i]));
    }
  }
  retire_fragments(out_dir, evidence, planned, share);  // reads `planned` only when not whole
  // A partial run leaves a manifest of the same plan alone (other runs of it may be using it);
  // any other one would vouch for files this run overwrites.
  if (!share.whole && !(evidence.manifest && plan_changes(*evidence.manifest, planned).empty())) {
    write_manifest(out_dir, planned, share.writer);
  }
  // Needed no more: a manifest holds every tensor, and large checkpoints have 100,000s.
  planned = Manifest{};
  evidence = Evidence{};
  earlier.reset();
  // What laying out freed (each file's header text, made to size the file) goes back before the
  // copy: left as holes in the heap, those pages stayed resident through the first files.
  release_free_memory();

  std::uint64_t total = share.side_files ? side_files_bytes(plan) : 0;
  for (const FileWork& w : to_write) total += w.layout.file_size - w.layout.data_start;
  Progress progress(options.progress, total);
  writer.write(
      to_write, summary.threads, page_cache_for(options.page_cache, total), progress,
      [&](CommittedEntry&& committed) { run_manifest.record(std::move(committed.entry), committed.lines); },
      [&] { inputs.check(); });
  if (share.side_files) {
    for (const std::string& name : plan.side_files) {
      const std::optional<std::uint64_t> expected =
          writer.side_file_xxh3 ? writer.side_file_xxh3(name) : std::nullopt;
      run_manifest.record(
          copy_side_file(plan.input_root, name, out_dir, plan.outside_links, inputs, progress, expected),
          RunManifest::Rewrite::later);
    }
    for (const plan::GeneratedFile& file : plan.generated_files)
      run_manifest.record(write_generated_file(file, out_dir, inputs, progress), RunManifest::Rewrite::later);
    // A whole run's record is the folder's manifest, which complete_manifest writes next (at
    // Pro's tensor count, each rewrite copies 50 MB); a fragment must list the side files before
    // another process completes the manifest from it.
    if (!share.whole) run_manifest.rewrite();
    summary.side_files = plan.side_files.size() + plan.generated_files.size();
    summary.bytes += side_files_bytes(plan);
  }
  progress.finish();

  // Also covers the files an earlier run finished and this one kept.
  inputs.check();
  Completion done = complete_manifest(plan, out_dir, run_manifest, share.writer, writer.tensor_list);
  if (!done.written && options.launch && options.launch->index == 0) {
    const auto own_time = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start);
    const auto limit =
        options.manifest_wait.count() > 0 ? options.manifest_wait : std::max(kMinManifestWait, 2 * own_time);
    done = wait_for_manifest(plan, out_dir, run_manifest, share, writer.tensor_list, limit);
  }

  for (const FileWork& w : to_write) {
    summary.tensors += w.planned->tensors.size();
    summary.bytes += w.layout.file_size;
  }
  summary.files = to_write.size();
  summary.kept = work.size() - to_write.size();
  summary.manifest_complete = done.written;
  summary.waiting_for = done.missing_ranks;
  summary.manifest = done.written ? std::move(done.manifest) : run_manifest.finished();
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return summary;
}

std::string format_summary(const RunSummary& s) {
  const double gb = static_cast<double>(s.bytes) / 1e9;
  std::string text = fmt::format(
      "wrote {} file{} ({} tensors) and {} side file{}: {:.2f} GB in {:.1f} s ({:.2f} GB/s, {} thread{})",
      s.files, s.files == 1 ? "" : "s", s.tensors, s.side_files, s.side_files == 1 ? "" : "s", gb, s.seconds,
      s.seconds > 0 ? gb / s.seconds : 0.0, s.threads, s.threads == 1 ? "" : "s");
  if (s.kept > 0)
    text += fmt::format("; kept {} file{} an earlier run finished", s.kept, s.kept == 1 ? "" : "s");
  if (s.whole) return text;
  text += fmt::format("\nranks {}: ", format_rank_list(s.ranks));
  if (s.manifest_complete) return text + "the manifest is complete";
  return text + fmt::format("the manifest waits for {} (the run that finishes the last of them completes it)",
                            s.waiting_for.empty() ? std::string("the side files")
                                                  : "ranks " + format_rank_list(s.waiting_for));
}

}  // namespace shardwise::output
