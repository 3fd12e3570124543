#include "reshard/old_entries.hpp"

namespace shardwise::reshard {

// `name` kept in the plan's arena.
plan::Name arena_name(ReshardPlan& plan, std::string_view name) {
  return plan::Name::borrowed(plan.names->add(name));
}

std::uint32_t OriginTable::add(output::TensorOrigin&& origin, const plan::Name& tensor_name) {
  Origin kept{origin.name == tensor_name.view() ? tensor_name : arena_name(plan_, origin.name),
              origin.dtype,
              plan::Shape(origin.shape),
              origin.rows,
              0,
              origin.within};
  const auto [text, added] = texts_.try_emplace(std::move(origin.irreversible),
                                                static_cast<std::uint32_t>(plan_.origin_texts.size()));
  if (added) plan_.origin_texts.push_back(text->first);
  kept.irreversible = text->second;
  plan_.origins.push_back(std::move(kept));
  return static_cast<std::uint32_t>(plan_.origins.size() - 1);
}

// An entry of the manifest as planning keeps it; without its origin when `keep_origin` is false
// (reversing: its caller reads the manifest's own).
Entry entry_of(ReshardPlan& plan, OriginTable& origins, output::ManifestTensor&& t, bool keep_origin) {
  Entry e;
  e.name = arena_name(plan, t.name);
  e.xxh3 = t.xxh3;
  if (t.cut) {
    e.has_cut = true;
    e.dtype = t.cut->dtype;
    e.shape = plan::Shape(t.cut->shape);
    e.placement = t.cut->placement;
    e.begin = t.cut->begin;
    e.end = t.cut->end;
    e.size = t.cut->size;
    e.composite = std::move(t.cut->composite);
  }
  if (keep_origin && t.origin) e.origin = origins.add(std::move(*t.origin), e.name);
  return e;
}

// The tensor entries of `manifest` (already read whole), moved out of it; or, when `keep`, copied
// without their origins (reversing: its caller reads the manifest's own).
void entries_of(ReshardPlan& plan, output::Manifest& manifest, bool keep, Entries& entries) {
  OriginTable origins(plan);
  entries.resize_outputs(manifest.outputs.size());
  for (std::size_t i = 0; i < manifest.outputs.size(); ++i) {
    std::vector<output::ManifestTensor>& tensors = manifest.outputs[i].tensors;
    for (output::ManifestTensor& t : tensors) {
      if (keep) {
        output::ManifestTensor copy{t.name, t.xxh3, t.cut, std::nullopt};
        entries.add(i, entry_of(plan, origins, std::move(copy), false));
      } else {
        entries.add(i, entry_of(plan, origins, std::move(t), true));
      }
    }
    if (!keep) std::vector<output::ManifestTensor>().swap(tensors);
  }
}

}  // namespace shardwise::reshard
