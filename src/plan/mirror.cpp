#include "plan/mirror.hpp"

#include <filesystem>
#include <map>
#include <vector>

#include <fmt/format.h>

#include <shardwise/core/io.hpp>
#include <shardwise/safetensors/python_index.hpp>

namespace shardwise::plan::detail {

void make_mirrored_outputs(Plan& plan, const st::Checkpoint& checkpoint) {
  plan.naming = OutputNaming::mirror;
  plan.model_parallel = checkpoint.files().size();
  plan.outputs.assign(checkpoint.files().size(), OutputFile{});
  for (std::size_t i = 0; i < checkpoint.files().size(); ++i) {
    plan.outputs[i].rank = i;
    plan.outputs[i].file = checkpoint.file_name(i);
  }
}

bool fits_mirror(const rules::Decision& decision, const std::string& output, const std::string& rule_label,
                 Diagnostics& problems) {
  std::string why;
  if (decision.layout != nullptr) {
    why = fmt::format("it is a member of packed layout {}", decision.layout->name);
  } else if (decision.owner) {
    why = "it is owned by one rank";
  } else if (decision.split != rules::Split::replicate) {
    why = fmt::format("it is split ({})", rules::split_name(decision.split));
  } else if (output != decision.source) {
    why = fmt::format("it is renamed to {}", output);
  }
  if (why.empty()) return true;
  problems.add(fmt::format("{}: mirrored output keeps every tensor whole under its own name, but {} by {}",
                           decision.source, why, rule_label));
  return false;
}

namespace {

// The input names of the companions a written tensor consumed: a dequantization's scale. (A
// re-quantisation's scale is written too, re-quantised: it stays in the index.)
std::set<std::string> consumed_companions(const Plan& plan) {
  std::set<std::string> names;
  for (const OutputFile& out : plan.outputs) {
    for (const PlannedTensor& t : out.tensors) {
      if ((t.cast == Cast::dequantize || t.cast == Cast::dequantize_packed) && t.companion != kNoCompanion) {
        const Companion& c = plan.companions[t.companion];
        names.insert(plan.sources[c.source].name);
        if (c.zeros != kNoSource) names.insert(plan.sources[c.zeros].name);
        if (c.group_index != kNoSource) names.insert(plan.sources[c.group_index].name);
      }
    }
  }
  return names;
}

}  // namespace

void add_mirrored_index(Plan& plan, Diagnostics& problems) {
  const std::set<std::string> consumed = consumed_companions(plan);
  const std::string path = (std::filesystem::path(plan.input_root) / kIndexFileName).string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    problems.add(
        fmt::format("{} has no {}: mirrored output rewrites the input's index (as DeepSeek's "
                    "fp8_cast_bf16.py does), so the input must be a folder with one",
                    plan.input_root, kIndexFileName));
    return;
  }
  const io::ReadOnlyFile file(path);
  std::string text(static_cast<std::size_t>(file.size()), '\0');
  io::pread_exact(file.fd(), path, 0, std::as_writable_bytes(std::span(text)));
  std::vector<st::IndexEntry> entries = st::read_weight_map_in_order(text, path);
  std::erase_if(entries, [&](const st::IndexEntry& e) { return consumed.count(e.first) != 0; });
  // A packed dequantization writes its weight under a new name, in the file of its codes.
  std::map<std::string, std::string> renamed;
  for (const OutputFile& out : plan.outputs) {
    for (const PlannedTensor& t : out.tensors) {
      if (t.cast == Cast::dequantize_packed) renamed.emplace(plan.sources[t.source].name, t.name);
    }
  }
  for (st::IndexEntry& e : entries) {
    if (const auto it = renamed.find(e.first); it != renamed.end()) e.first = it->second;
  }
  plan.generated_files.push_back(GeneratedFile{kIndexFileName, st::python_index_json(entries), kIndexFileName,
                                               identity_of_open_file(file.fd(), path)});
}

}  // namespace shardwise::plan::detail
