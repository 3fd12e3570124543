#include "output/earlier_entries.hpp"

#include <limits>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace shardwise::output {

namespace {

constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();
constexpr std::size_t kFlushBytes = 1 << 20;

}  // namespace

EarlierEntries::EarlierEntries(const std::string& folder, const plan::Plan& plan, std::vector<bool> wanted,
                               ListOf list_of)
    : plan_(plan),
      wanted_(std::move(wanted)),
      list_of_(std::move(list_of)),
      found_(plan.outputs.size()),
      store_(folder) {
  wanted_.resize(plan.outputs.size(), false);
}

std::optional<Manifest> EarlierEntries::read(const std::string& path, const Manifest& now) {
  std::unordered_map<std::string_view, std::size_t> by_file;
  for (std::size_t i = 0; i < plan_.outputs.size(); ++i) {
    if (wanted_[i] && !found_[i]) by_file.emplace(plan_.outputs[i].file, i);
  }
  const auto planned_index = [&](const std::string& file) {
    const auto it = by_file.find(file);
    return it == by_file.end() ? kNone : it->second;
  };
  // Per output entry of the record (by its position there): the planned output its file names,
  // whether its tensors so far are that output's, and where their lines are.
  struct Pending {
    bool seen = false;
    std::size_t planned = kNone;
    std::uint64_t count = 0;
    std::size_t expected = 0;  // the planned list's size
    bool fits = true;
    EntryTexts::Span lines;
  };
  std::vector<Pending> pending;
  // The planned list the current entry is compared with: the plan's, or one made by list_of_ for
  // that entry alone.
  std::optional<plan::OutputFile> made;
  const std::vector<plan::PlannedTensor>* expected = nullptr;
  std::string buffer;
  const auto flush = [&] {
    store_.append(buffer);
    buffer.clear();
  };
  TensorVisitor visitor;
  visitor.tensor = [&](std::size_t output, const std::string& file, ManifestTensor&& tensor) {
    if (pending.size() <= output) pending.resize(output + 1);
    Pending& p = pending[output];
    if (!p.seen) {
      p.seen = true;
      p.planned = planned_index(file);
      p.lines.offset = store_.end() + buffer.size();
      made.reset();
      expected = nullptr;
      if (p.planned != kNone) {
        if (list_of_) made = list_of_(p.planned);
        expected = made ? &made->tensors : &plan_.outputs[p.planned].tensors;
        p.expected = expected->size();
      }
    }
    if (p.planned == kNone || !p.fits) return;
    if (p.count >= expected->size() || tensor.name != (*expected)[p.count].name) {
      p.fits = false;
      return;
    }
    format_tensor_line(buffer, tensor, p.count == 0);
    ++p.count;
    p.lines.length = store_.end() + buffer.size() - p.lines.offset;
    if (buffer.size() >= kFlushBytes) flush();
  };
  // Read whole after all: every tensor comes again; the lines so far stay in the store, unused.
  visitor.restart = [&] {
    flush();
    pending.clear();
  };
  std::optional<Manifest> record = read_manifest_file(path, visitor);
  flush();
  made.reset();
  if (!record || !plan_changes(*record, now).empty()) return record;
  for (std::size_t i = 0; i < record->outputs.size(); ++i) {
    const ManifestOutput& entry = record->outputs[i];
    const std::size_t index = planned_index(entry.file);
    if (index == kNone || found_[index] || !has_checksums(*record, entry)) continue;
    const plan::OutputFile& planned = plan_.outputs[index];
    // An entry without tensors was never seen by the visitor: it fits an output without any.
    Pending p;
    if (i < pending.size() && pending[i].seen) {
      p = pending[i];
    } else {
      p.planned = index;
      p.expected = list_of_ ? list_of_(index).tensors.size() : planned.tensors.size();
    }
    if (p.planned != index || !p.fits || entry.rank != planned.rank || p.count != p.expected) continue;
    found_[index] = Entry{entry, p.lines};
  }
  return record;
}

}  // namespace shardwise::output
