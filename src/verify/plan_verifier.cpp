// verify_plan: the output folder against a plan made from the input's headers.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/convert/composite_stream.hpp>
#include <shardwise/convert/tensor_stream.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/verify/output_names.hpp>
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

// Planned tensors taking the same bytes of the same source (replicated over ranks) have one
// expected checksum, computed once: the input is read once.
struct ExpectedKey {
  std::size_t source = 0;
  int dim = -1;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  plan::Cast cast = plan::Cast::none;
  std::uint32_t companion = plan::kNoCompanion;
  std::uint32_t composite = plan::kNoComposite;         // each fused output is computed from its parts
  bool operator==(const ExpectedKey&) const = default;  // found by hash, not by order
};

ExpectedKey key_of(const plan::PlannedTensor& t) {
  return t.slice.whole() ? ExpectedKey{t.source, -1, 0, 0, t.cast, t.companion, t.composite}
                         : ExpectedKey{t.source, t.slice.dim, t.slice.begin, t.slice.end,
                                       t.cast,   t.companion, t.composite};
}

// The expected checksums met so far, by key: an open-addressed table of indices into
// Work::expected (4 bytes a slot). A std::map of the keys was 20 MB of nodes at Pro's count.
class ExpectedIndex {
 public:
  explicit ExpectedIndex(std::size_t capacity) {
    std::size_t slots = 16;
    while (slots < 2 * capacity) slots *= 2;
    slots_.assign(slots, kEmpty);
  }

  // The index in `expected` of the tensor's key, appending the tensor when the key is new.
  std::size_t find_or_add(const plan::PlannedTensor& t, std::vector<const plan::PlannedTensor*>& expected) {
    if (2 * (expected.size() + 1) > slots_.size()) grow(expected);
    const ExpectedKey key = key_of(t);
    for (std::size_t slot = hash(key) & (slots_.size() - 1);; slot = (slot + 1) & (slots_.size() - 1)) {
      if (slots_[slot] == kEmpty) {
        slots_[slot] = static_cast<std::uint32_t>(expected.size());
        expected.push_back(&t);
        return expected.size() - 1;
      }
      if (key_of(*expected[slots_[slot]]) == key) return slots_[slot];
    }
  }

 private:
  static constexpr std::uint32_t kEmpty = 0xFFFFFFFF;

  static std::size_t hash(const ExpectedKey& k) {
    std::uint64_t h = 0x9E3779B97F4A7C15ull;
    for (const std::uint64_t v : {std::uint64_t{k.source}, static_cast<std::uint64_t>(k.dim), k.begin, k.end,
                                  std::uint64_t{static_cast<std::uint8_t>(k.cast)},
                                  std::uint64_t{k.companion}, std::uint64_t{k.composite}})
      h = (h ^ v) * 0xBF58476D1CE4E5B9ull, h ^= h >> 31;
    return static_cast<std::size_t>(h);
  }

  void grow(const std::vector<const plan::PlannedTensor*>& expected) {
    slots_.assign(2 * slots_.size(), kEmpty);
    for (std::size_t i = 0; i < expected.size(); ++i) {
      std::size_t slot = hash(key_of(*expected[i])) & (slots_.size() - 1);
      while (slots_[slot] != kEmpty) slot = (slot + 1) & (slots_.size() - 1);
      slots_[slot] = static_cast<std::uint32_t>(i);
    }
  }

  std::vector<std::uint32_t> slots_;
};

struct Compared {
  std::size_t header_index = 0;
  const plan::PlannedTensor* planned = nullptr;
  std::size_t expected = 0;  // index into Work::expected
};

struct OutputCheck {
  const plan::OutputFile* planned = nullptr;
  std::optional<ScanTarget> file;  // absent when missing or not valid safetensors
  std::vector<Compared> compared;
  FileDigests digests;
};

struct SideCheck {
  std::string name;
  const std::string* content = nullptr;  // a generated file's planned content; null: a copy of the input's
  std::uint64_t expected = 0;
  std::uint64_t found = 0;
};

struct Work {
  std::vector<OutputCheck> outputs;
  std::vector<const plan::PlannedTensor*> expected;  // one representative per ExpectedKey
  std::vector<std::uint64_t> expected_digests;
  std::vector<SideCheck> sides;
};

// {"format": "pt"}: a header's __metadata__ for a finding.
std::string metadata_text(const std::map<std::string, std::string>& metadata) {
  std::vector<std::string> entries;
  for (const auto& [key, value] : metadata) entries.push_back(fmt::format("\"{}\": \"{}\"", key, value));
  return fmt::format("{{{}}}", fmt::join(entries, ", "));
}

// A name save_pretrained gives its files: model.safetensors, model-00001-of-00003.safetensors.
bool is_hf_model_file_name(std::string_view name) {
  if (name == "model.safetensors") return true;
  constexpr std::string_view prefix = "model-", suffix = ".safetensors";
  if (!name.starts_with(prefix) || !name.ends_with(suffix)) return false;
  name = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  const std::size_t of = name.find("-of-");
  const auto digits = [](std::string_view text) {
    return text.size() >= 5 &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return of != std::string_view::npos && digits(name.substr(0, of)) && digits(name.substr(of + 4));
}

// Planned tensors against the file's header: present, dtype, shape, nothing extra; the planned
// metadata (Hugging Face's layout).
void check_structure(OutputCheck& check, const st::File& file, Findings& findings, ExpectedIndex& keys,
                     Work& work) {
  const std::string& name = check.planned->file;
  const st::Header& header = file.header();
  check.compared.reserve(check.planned->tensors.size());
  for (const plan::PlannedTensor& t : check.planned->tensors) {
    const st::TensorInfo* found = header.find(t.name);
    if (found == nullptr) {
      findings.add(name, t.name,
                   fmt::format("missing (planned {} {})", st::dtype_name(t.dtype), st::shape_text(t.shape)));
    } else if (found->dtype != t.dtype) {
      findings.add(
          name, t.name,
          fmt::format("dtype {}, planned {}", st::dtype_name(found->dtype), st::dtype_name(t.dtype)));
    } else if (found->shape != t.shape) {
      findings.add(
          name, t.name,
          fmt::format("shape {}, planned {}", st::shape_text(found->shape), st::shape_text(t.shape)));
    } else {
      const std::size_t expected = keys.find_or_add(t, work.expected);
      check.compared.push_back({static_cast<std::size_t>(found - header.tensors.data()), &t, expected});
    }
  }
  if (!check.planned->metadata.empty() && header.metadata != check.planned->metadata) {
    findings.add(name, fmt::format("header metadata {}, planned {}", metadata_text(header.metadata),
                                   metadata_text(check.planned->metadata)));
  }
  const auto& planned = check.planned->tensors;
  for (const st::TensorInfo& t : header.tensors) {
    const auto it =
        std::lower_bound(planned.begin(), planned.end(), t.name,
                         [](const plan::PlannedTensor& a, std::string_view b) { return a.name < b; });
    const bool known = it != planned.end() && it->name == t.name;
    if (!known) {
      findings.add(name, std::string(t.name),
                   fmt::format("unexpected tensor (not in the plan): {} {}", st::dtype_name(t.dtype),
                               st::shape_text(t.shape)));
    }
  }
}

// Files present, opened, and their headers checked; extra files of ours reported.
Work survey(const plan::Plan& plan, const rules::Rules& rules, const std::string& out, Findings& findings) {
  const std::set<std::string> present = list_folder(out);
  Work work;
  std::size_t planned_tensors = 0;
  for (const plan::OutputFile& planned : plan.outputs) planned_tensors += planned.tensors.size();
  ExpectedIndex keys(planned_tensors);
  std::vector<std::string> ours;
  for (const plan::OutputFile& planned : plan.outputs) {
    ours.push_back(planned.file);
    OutputCheck check{&planned, std::nullopt, {}, {}};
    const std::string path = (fs::path(out) / planned.file).string();
    if (present.count(planned.file) == 0) {
      findings.add(planned.file, fmt::format("missing (planned: {} tensors, {} bytes of data)",
                                             planned.tensors.size(), planned.bytes));
    } else {
      try {
        // Its header is read here only: the scan keeps the tensors' ranges (ScanTarget).
        const st::File file = st::File::open(path);
        check_structure(check, file, findings, keys, work);
        check.file.emplace(file);
      } catch (const Error& e) {
        check.file.reset();
        findings.add(planned.file, "not a valid safetensors file: " + message_without_path(e.what(), path));
      }
    }
    work.outputs.push_back(std::move(check));
  }
  for (const std::string& side : plan.side_files) {
    ours.push_back(side);
    if (present.count(side) == 0) {
      findings.add(side, "missing side file");
    } else {
      work.sides.push_back({side, nullptr, 0, 0});
    }
  }
  for (const plan::GeneratedFile& generated : plan.generated_files) {
    ours.push_back(generated.file);
    if (present.count(generated.file) == 0) {
      findings.add(generated.file, "missing file (the plan writes it)");
    } else {
      work.sides.push_back({generated.file, &generated.content, 0, 0});
    }
  }
  if (plan.naming == plan::OutputNaming::hf) {
    // Files of another sharding (another max shard size) would be read beside these.
    const std::set<std::string> planned(ours.begin(), ours.end());
    for (const std::string& name : present) {
      if (is_hf_model_file_name(name) && planned.count(name) == 0) {
        findings.add(name, fmt::format("unexpected output file: the plan writes {} Hugging Face file{} ({})",
                                       plan.outputs.size(), plan.outputs.size() == 1 ? "" : "s",
                                       plan.outputs.front().file));
      }
    }
  }
  const OutputNamePattern pattern = OutputNamePattern::from_rules(rules, plan.model_parallel);
  for (const std::string& name : present) {
    const auto rank = pattern.rank_of(name);
    if (rank && (*rank >= plan.outputs.size() || plan.outputs[*rank].file != name)) {
      findings.add(name, fmt::format("unexpected output file: the plan for mp={} has no rank {}",
                                     plan.model_parallel, *rank));
    }
  }
  ours.emplace_back(output::kManifestFileName);
  report_leftover_temporaries(present, ours, findings);
  work.expected_digests.assign(work.expected.size(), 0);
  return work;
}

std::string source_text(const plan::Plan& plan, const plan::PlannedTensor& t);

// A fused output's parts, for messages: "fused by fuse[qkv] (...) along dim 0 from: ...; ...".
std::string composite_text(const plan::Plan& plan, const plan::PlannedTensor& t) {
  const plan::Composite& c = plan.composites.at(t.composite);
  std::string text = fmt::format("fused by {} along dim {}{} from", plan.rule_labels.at(c.rule), c.dim,
                                 c.stacked ? fmt::format(", {} indices stacked", c.indices.size()) : "");
  for (std::size_t i = 0; i < c.parts.size(); ++i) {
    text += fmt::format("{} {} ({})", i == 0 ? ":" : ";", c.parts[i].name, source_text(plan, c.parts[i]));
  }
  return text;
}

std::string source_text(const plan::Plan& plan, const plan::PlannedTensor& t) {
  if (t.composite != plan::kNoComposite) return composite_text(plan, t);
  const plan::Source& source = plan.sources[t.source];
  const std::string file = fs::path(plan.input_files[source.file]).filename().string();
  std::string text = t.slice.whole() ? fmt::format("source {} in {}", source.name, file)
                                     : fmt::format("source slice dim{}[{}:{}] of {} in {}", t.slice.dim,
                                                   t.slice.begin, t.slice.end, source.name, file);
  if (t.cast == plan::Cast::reinterpret) {
    text += fmt::format(" read as {}", st::dtype_name(t.dtype));
  } else if (t.companion != plan::kNoCompanion && t.companion < plan.companions.size()) {
    const plan::Companion& c = plan.companions[t.companion];
    text += fmt::format(" after {} with {} ({})", plan::cast_name(t.cast), plan.sources[c.source].name,
                        c.rule < plan.rule_labels.size() ? plan.rule_labels[c.rule] : "");
  } else if (t.cast != plan::Cast::none) {
    text += fmt::format(" after the cast {} -> {}", st::dtype_name(source.dtype), st::dtype_name(t.dtype));
  }
  return text;
}

// Bytes of the source read for `t` (its companion aside), for progress.
std::uint64_t source_bytes_read(const plan::PlannedTensor& t) {
  switch (t.cast) {
    case plan::Cast::f32_to_bf16:
      return 2 * t.bytes;
    case plan::Cast::dequantize:
    case plan::Cast::requantize_fp4_weight:
      return t.bytes / 2;
    case plan::Cast::requantize_fp4_scale:
      return t.bytes * 128 * 4;
    default:
      return t.bytes;
  }
}

}  // namespace

namespace {

enum class TaskKind { scan_output, expected, side_file };

struct Task {
  TaskKind kind;
  std::size_t index;
  std::uint64_t cost;  // bytes read
};

// Output files (the largest tasks) first, largest first, so that no thread is left with a big one
// at the end; then the expected checksums in the order of their sources in the input files, so
// that the input is read front to back, each range while its neighbours' pages are fresh (a
// tensor's slices for every rank are read one after the other); side files last.
std::vector<Task> tasks_of(const plan::Plan& plan, const Work& work) {
  std::vector<Task> tasks;
  tasks.reserve(work.outputs.size() + work.expected.size() + work.sides.size());
  for (std::size_t i = 0; i < work.outputs.size(); ++i) {
    if (work.outputs[i].file) tasks.push_back({TaskKind::scan_output, i, work.outputs[i].file->size()});
  }
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.cost > b.cost; });
  std::vector<std::size_t> expected(work.expected.size());
  std::iota(expected.begin(), expected.end(), std::size_t{0});
  const auto place = [&](std::size_t i) {
    const plan::Source& source = plan.sources.at(work.expected[i]->source);
    return std::pair{source.file, source.offset};
  };
  std::stable_sort(expected.begin(), expected.end(),
                   [&](std::size_t a, std::size_t b) { return place(a) < place(b); });
  for (const std::size_t i : expected)
    tasks.push_back({TaskKind::expected, i, source_bytes_read(*work.expected[i])});
  for (std::size_t i = 0; i < work.sides.size(); ++i) tasks.push_back({TaskKind::side_file, i, 0});
  return tasks;
}

// With drop, the input leaves the page cache in whole chunks of this size, once no expected
// checksum still to be computed reads a byte of it (as convert drops its inputs): a call per
// source, 100,000s of them in a full-size model, cost more system time than the reads.
constexpr std::uint64_t kInputDropBytes = 8u << 20;

// Per input file, per kInputDropBytes chunk of it: the expected checksums still to read a byte of it.
using UnreadChunks = std::vector<std::vector<std::atomic<std::uint32_t>>>;

// The chunks [first, last] of its input file that a source's bytes fall in (none when empty).
std::pair<std::uint64_t, std::uint64_t> chunks_of(const plan::Source& source) {
  return {source.offset / kInputDropBytes, (source.offset + source.bytes - 1) / kInputDropBytes};
}

UnreadChunks unread_counts(const plan::Plan& plan, const Work& work) {
  std::vector<std::uint64_t> sizes(plan.input_files.size());
  for (const plan::PlannedTensor* t : work.expected) {
    const plan::Source& source = plan.sources.at(t->source);
    if (source.bytes != 0)
      sizes.at(source.file) = std::max(sizes.at(source.file), chunks_of(source).second + 1);
  }
  UnreadChunks counts(plan.input_files.size());
  for (std::size_t f = 0; f < counts.size(); ++f)
    counts[f] = std::vector<std::atomic<std::uint32_t>>(sizes[f]);
  for (const plan::PlannedTensor* t : work.expected) {
    const plan::Source& source = plan.sources.at(t->source);
    if (source.bytes == 0) continue;
    const auto [first, last] = chunks_of(source);
    for (std::uint64_t c = first; c <= last; ++c) ++counts[source.file][c];
  }
  return counts;
}

struct Reader {
  const plan::Plan& plan;
  const std::string& out;
  std::vector<io::ReadOnlyFile> inputs;  // one per input file, shared by threads (pread only)
  ThreadBuffers buffers;
  output::Progress& progress;
  Findings& findings;
  output::PageCache cache;
  UnreadChunks unread;  // see unread_counts

  // One expected checksum read `source`: with drop, its chunks that no other reads leave the cache.
  void done_with(const plan::Source& source) {
    if (source.bytes == 0) return;
    const auto [first, last] = chunks_of(source);
    const io::ReadOnlyFile& input = inputs.at(source.file);
    for (std::uint64_t c = first; c <= last; ++c) {
      if (--unread[source.file][c] == 0 && cache == output::PageCache::drop)
        io::drop_cached(input.fd(), c * kInputDropBytes, kInputDropBytes);
    }
  }

  void run(const Task& task, unsigned worker, Work& work) {
    switch (task.kind) {
      case TaskKind::scan_output:
        scan(work.outputs[task.index], worker);
        return;
      case TaskKind::expected:
        expect(work, task.index, worker);
        return;
      case TaskKind::side_file:
        side(work.sides[task.index], worker);
        return;
    }
  }

  // A file that cannot be read to its end (it shrank, or the disk failed) is a finding.
  void scan(OutputCheck& check, unsigned worker) {
    progress.set_current(check.planned->file);
    try {
      check.digests = scan_output_file(*check.file, buffers.main(worker), progress, cache);
    } catch (const Error& e) {
      findings.add(check.planned->file,
                   "cannot be read: " + message_without_path(e.what(), check.file->path()));
      check.file.reset();
    }
  }

  // Errors reading the input are not findings: they stop verification (Error(input/io)).
  void expect(Work& work, std::size_t index, unsigned worker) {
    const plan::PlannedTensor& t = *work.expected[index];
    const plan::Source& source = plan.sources.at(t.source);
    const io::ReadOnlyFile& input = inputs.at(source.file);
    if (t.composite != plan::kNoComposite) {
      // Recomputed from its parts, each read from its own input file.
      std::vector<convert::InputFile> files;
      for (const io::ReadOnlyFile& file : inputs) files.push_back({file.fd(), &file.path()});
      work.expected_digests[index] = convert::expected_xxh3(convert::CompositeStream(plan, t), files,
                                                            buffers.main(worker), buffers.scratch(worker));
      progress.add(t.bytes);
      done_with(source);
      return;
    }
    const convert::TensorStream stream(plan, t);
    convert::CompanionInput companion;
    if (const auto file = stream.companion_file())
      companion = {inputs.at(*file).fd(), &inputs.at(*file).path(), {}};
    if (stream.needs_input_files()) companion.files = inputs;
    work.expected_digests[index] = convert::expected_xxh3(
        stream, input.fd(), input.path(), buffers.main(worker), buffers.scratch(worker), companion);
    progress.add(source_bytes_read(t));
    done_with(source);
  }

  void side(SideCheck& check, unsigned worker) {
    check.expected = check.content != nullptr
                         ? output::xxh3(*check.content)
                         : hash_whole_file((fs::path(plan.input_root) / check.name).string(),
                                           buffers.main(worker), progress);
    check.found = hash_whole_file((fs::path(out) / check.name).string(), buffers.main(worker), progress);
  }
};

std::uint64_t total_bytes(const Work& work, const plan::Plan& plan, const std::string& out) {
  std::uint64_t total = 0;
  for (const OutputCheck& check : work.outputs) total += check.file ? check.file->size() : 0;
  for (const plan::PlannedTensor* t : work.expected) total += source_bytes_read(*t);
  std::error_code ec;
  for (const SideCheck& side : work.sides) {
    if (side.content == nullptr) total += fs::file_size(fs::path(plan.input_root) / side.name, ec);
    total += fs::file_size(fs::path(out) / side.name, ec);
  }
  return total;
}

// Expected against found checksums; what was read, for the manifest's check.
DiskState compare(const plan::Plan& plan, const Work& work, Findings& findings, VerifyReport& report) {
  DiskState disk;
  for (const OutputCheck& check : work.outputs) {
    if (!check.file) continue;
    ++report.files;
    ScannedOutput& scanned = disk.outputs[check.planned->file];
    scanned.size = check.digests.size;
    scanned.whole = check.digests.whole;
    // The tensors compared with the plan, by their planned names: any other tensor on disk (not
    // planned, or not as planned) has a finding, which the manifest's cross-check never repeats.
    scanned.tensors.reserve(check.compared.size());
    for (const Compared& c : check.compared)
      scanned.tensors.emplace_back(c.planned->name, check.digests.tensors[c.header_index]);
    scanned.sort();
    for (const Compared& c : check.compared) {
      ++report.tensors;
      const std::uint64_t expected = work.expected_digests[c.expected];
      const std::uint64_t found = check.digests.tensors[c.header_index];
      if (expected == found) continue;
      findings.add(
          check.planned->file, c.planned->name,
          fmt::format("bytes differ from {} (expected xxh3 {}, found {})", source_text(plan, *c.planned),
                      output::xxh3_hex(expected), output::xxh3_hex(found)));
    }
  }
  for (const SideCheck& side : work.sides) {
    ++report.side_files;
    disk.side_files[side.name] = side.found;
    if (side.expected != side.found) {
      findings.add(side.name, fmt::format("{} (expected xxh3 {}, found {})",
                                          side.content != nullptr ? "differs from the file the plan computes"
                                                                  : "side file differs from the input's",
                                          output::xxh3_hex(side.expected), output::xxh3_hex(side.found)));
    }
  }
  return disk;
}

void check_manifest(const plan::Plan& plan, const rules::Rules& rules, const std::string& out,
                    const DiskState& disk, Findings& findings, VerifyReport& report) {
  // Read a tensor at a time: its entries are never held (100,000s in a full-size model).
  StreamedComparison comparison(disk, ManifestRole::cross_check);
  std::optional<output::Manifest> manifest;
  try {
    manifest = output::read_manifest(out, comparison.visitor());
  } catch (const Error& e) {
    const std::string path = (fs::path(out) / output::kManifestFileName).string();
    findings.add(output::kManifestFileName, message_without_path(e.what(), path));
    return;
  }
  if (!manifest) return;
  report.manifest_checked = true;
  compare_manifest_with_plan(*manifest, plan, {rules.name(), output::xxh3(rules.text())},
                             output::input_headers_xxh3(plan), findings);
  report.notes = input_changes(*manifest, plan);
  if (manifest->complete) comparison.finish(*manifest, findings);
}

std::vector<std::string> file_order(const plan::Plan& plan) {
  std::vector<std::string> order;
  for (const plan::OutputFile& o : plan.outputs) order.push_back(o.file);
  order.insert(order.end(), plan.side_files.begin(), plan.side_files.end());
  return order;
}

}  // namespace

VerifyReport verify_plan(const plan::Plan& plan, const rules::Rules& rules, const VerifyOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  release_free_memory();  // what planning freed, before the reading threads allocate
  give_back_large_blocks();
  const std::string& out = options.output_dir;
  Findings findings(file_order(plan));
  Work work = survey(plan, rules, out, findings);
  release_free_memory();  // the output headers it read, 10,000s of names each

  VerifyReport report;
  report.threads = thread_count(options.threads);
  std::vector<io::ReadOnlyFile> inputs;
  inputs.reserve(plan.input_files.size());
  for (const std::string& path : plan.input_files) inputs.emplace_back(path);
  const std::vector<Task> tasks = tasks_of(plan, work);
  {
    const std::uint64_t total = total_bytes(work, plan, out);
    output::Progress progress(options.progress, total);
    const output::PageCache cache = options.page_cache != output::PageCache::automatic ? options.page_cache
                                    : io::exceeds_page_cache(total) ? output::PageCache::drop
                                                                    : output::PageCache::keep;
    if (cache == output::PageCache::drop) {
      for (const io::ReadOnlyFile& input : inputs) io::advise_sequential(input.fd());
    }
    Reader reader{plan,
                  out,
                  std::move(inputs),
                  ThreadBuffers(report.threads, buffer_bytes_for(options.buffer_bytes, report.threads)),
                  progress,
                  findings,
                  cache,
                  unread_counts(plan, work)};
    run_parallel(tasks.size(), report.threads,
                 [&](std::size_t task, unsigned worker) { reader.run(tasks[task], worker, work); });
    progress.finish();
    report.bytes_read = progress.done();
  }
  const DiskState disk = compare(plan, work, findings, report);
  check_manifest(plan, rules, out, disk, findings, report);
  report.findings = findings.sorted();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace shardwise::verify
