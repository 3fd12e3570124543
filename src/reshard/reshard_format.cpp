// `reshard --dry-run`: the plan as text or JSON, each new tensor with the old pieces it is made of.
#include <shardwise/reshard/reshard.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace shardwise::reshard {

namespace {

using Kind = plan::Placement::Kind;

// The old pieces a new tensor reads: (old file index, begin, end) in order; a whole tensor: one.
struct Use {
  std::size_t file;
  std::uint64_t begin;
  std::uint64_t end;
};

std::vector<Use> uses(const ReshardPlan& plan, const NewTensor& t) {
  const LogicalTensor& logical = plan.logical[t.logical];
  std::vector<Use> result;
  if (logical.placement.kind != Kind::split) {
    result.push_back({logical.pieces.front().file, 0, 0});
    return result;
  }
  for (const Piece& p : logical.pieces) {
    const std::uint64_t begin = std::max(p.begin, t.begin);
    const std::uint64_t end = std::min(p.end, t.end);
    if (begin < end) result.push_back({p.file, begin - p.begin, end - p.begin});
  }
  return result;
}

std::string how(const LogicalTensor& t) {
  switch (t.placement.kind) {
    case Kind::split: return fmt::format("split dim {}", t.placement.dim);
    case Kind::owned: return fmt::format("owned {}/{}", t.placement.index, t.placement.count);
    case Kind::replicated: break;
  }
  return "replicated";
}

}  // namespace

std::string format_reshard_text(const ReshardPlan& plan) {
  std::string text = fmt::format("reshard {} (mp={}) -> mp={}: {} files, {} logical tensors, {} tensor bytes\n",
                                 plan.from, plan.from_model_parallel, plan.model_parallel, plan.outputs.size(),
                                 plan.logical.size(), plan.output_bytes);
  for (const NewFile& f : plan.outputs) {
    text += fmt::format("{} (rank {}, {} tensors, {} bytes)\n", f.file, f.rank, f.tensors.size(), f.bytes);
    for (const NewTensor& t : f.tensors) {
      const LogicalTensor& logical = plan.logical[t.logical];
      std::vector<std::string> from;
      for (const Use& u : uses(plan, t)) {
        const std::string& name = plan.old_files[u.file].file;
        from.push_back(logical.placement.kind == Kind::split ? fmt::format("{}[{}:{}]", name, u.begin, u.end) : name);
      }
      text += fmt::format("  {} {}[{}] {} <- {}\n", logical.name, st::dtype_name(logical.dtype),
                          fmt::join(t.shape, ", "), how(logical), fmt::join(from, " + "));
    }
  }
  if (!plan.side_files.empty()) text += fmt::format("side files: {}\n", fmt::join(plan.side_files, ", "));
  return text;
}

std::string format_reshard_json(const ReshardPlan& plan) {
  nlohmann::ordered_json json;
  json["from"] = plan.from;
  json["from_model_parallel"] = plan.from_model_parallel;
  json["model_parallel"] = plan.model_parallel;
  json["outputs"] = nlohmann::ordered_json::array();
  for (const NewFile& f : plan.outputs) {
    nlohmann::ordered_json file = {{"rank", f.rank}, {"file", f.file}, {"bytes", f.bytes}, {"tensors", nlohmann::ordered_json::array()}};
    for (const NewTensor& t : f.tensors) {
      const LogicalTensor& logical = plan.logical[t.logical];
      nlohmann::ordered_json tensor = {{"name", logical.name}, {"dtype", std::string(st::dtype_name(logical.dtype))},
                                       {"shape", t.shape}, {"cut", how(logical)}, {"pieces", nlohmann::ordered_json::array()}};
      for (const Use& u : uses(plan, t)) {
        nlohmann::ordered_json piece = {{"file", plan.old_files[u.file].file}};
        if (logical.placement.kind == Kind::split) {
          piece["dim"] = logical.placement.dim;
          piece["begin"] = u.begin;
          piece["end"] = u.end;
        }
        tensor["pieces"].push_back(std::move(piece));
      }
      file["tensors"].push_back(std::move(tensor));
    }
    json["outputs"].push_back(std::move(file));
  }
  json["side_files"] = plan.side_files;
  return json.dump(1) + "\n";
}

}  // namespace shardwise::reshard
