// Modules for the scaffold: the tensors under one module path, their logical weight [out, in], and
// the packings recognised from member suffixes and shape ratios:
//   GPTQ: weight [in/P, out], zeros [in/G, out/P], scales [in/G, out]
//   AWQ:  weight [in, out/P],  zeros [in/G, out/P], scales [in/G, out]
// and FP8 weights whose scale tensor holds one value per block (for the draft's comments).
#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

#include "scaffold/model.hpp"

namespace shardwise::scaffold {
namespace {

struct Fit {
  PackKind kind = PackKind::gptq;
  std::uint64_t pack = 0;
  std::uint64_t group = 0;
  std::uint64_t out = 0;
  std::uint64_t in = 0;
};

// The packing a weight / zeros / scales triple fits, with its factors; nullopt when none does.
std::optional<Fit> fit_triple(std::span<const std::uint64_t> weight, std::span<const std::uint64_t> zeros,
                              std::span<const std::uint64_t> scales) {
  if (weight.size() != 2 || zeros.size() != 2 || scales.size() != 2) return std::nullopt;
  Fit fit;
  fit.out = scales[1];
  if (fit.out == 0 || zeros[1] == 0 || fit.out % zeros[1] != 0 || zeros[0] != scales[0]) return std::nullopt;
  fit.pack = fit.out / zeros[1];
  if (fit.pack < 2) return std::nullopt;
  if (weight[1] == fit.out) {
    fit.kind = PackKind::gptq;
    if (__builtin_mul_overflow(weight[0], fit.pack, &fit.in)) return std::nullopt;
  } else if (weight[1] == zeros[1]) {
    fit.kind = PackKind::awq;
    fit.in = weight[0];
  } else {
    return std::nullopt;
  }
  if (fit.in == 0 || scales[0] == 0 || fit.in % scales[0] != 0) return std::nullopt;
  fit.group = fit.in / scales[0];
  return fit;
}

std::string_view kind_name(PackKind kind) { return kind == PackKind::gptq ? "gptq" : "awq"; }

std::string packing_text(const Packing& p) {
  return fmt::format("{} packing {} group {} ({} triples, e.g. {})", kind_name(p.kind), p.pack, p.group,
                     p.groups, p.example);
}

std::string layout_name(const Fit& fit) {
  // A 32-bit element holding `pack` values: 8 -> int4.
  const std::string bits =
      32 % fit.pack == 0 ? fmt::format("int{}", 32 / fit.pack) : fmt::format("p{}", fit.pack);
  return fmt::format("{}-{}-g{}", kind_name(fit.kind), bits, fit.group);
}

std::uint64_t elements(std::span<const std::uint64_t> shape) {
  return st::element_count(shape).value_or(UINT64_MAX);
}

bool is_float(st::DType dtype) {
  switch (dtype) {
    case st::DType::BOOL:
    case st::DType::U8:
    case st::DType::I8:
    case st::DType::I16:
    case st::DType::U16:
    case st::DType::I32:
    case st::DType::U32:
    case st::DType::I64:
    case st::DType::U64:
      return false;
    default:
      return true;
  }
}

// The module's weight, [out, in] on its first two dims: its largest tensor of 2 or more dims, a
// floating-point one if there is any (an integer table beside a router is not its weight).
void find_main(std::span<const TensorHeader> tensors, Module& module) {
  const auto rank = [&](std::size_t t) {
    return std::pair(is_float(tensors[t].dtype), elements(tensors[t].shape));
  };
  for (const std::size_t t : module.tensors) {
    if (tensors[t].shape.size() < 2) continue;
    if (module.main == npos || rank(t) > rank(module.main)) module.main = t;
  }
  if (module.main == npos) return;
  module.out = tensors[module.main].shape[0];
  module.in = tensors[module.main].shape[1];
}

// The block size B with scale [ceil(out/B), ceil(in/B)], a power of two; 0 when there is none.
std::uint64_t block_of(std::span<const std::uint64_t> scale, std::uint64_t out, std::uint64_t in) {
  if (scale.size() != 2) return 0;
  for (std::uint64_t block = 2; block <= 4096; block *= 2) {
    if ((out + block - 1) / block == scale[0] && (in + block - 1) / block == scale[1]) return block;
  }
  return 0;
}

void note_block_scales(std::span<const TensorHeader> tensors, const Module& module,
                       std::vector<BlockScales>& out) {
  const TensorHeader& weight = tensors[module.main];
  if (weight.dtype != st::DType::F8_E4M3 && weight.dtype != st::DType::F8_E5M2) return;
  for (const std::size_t t : module.tensors) {
    const std::uint64_t block = t == module.main ? 0 : block_of(tensors[t].shape, module.out, module.in);
    if (block == 0) continue;
    auto it =
        std::find_if(out.begin(), out.end(), [&](const BlockScales& b) { return b.dtype == weight.dtype; });
    if (it == out.end()) {
      out.push_back(BlockScales{weight.dtype, 0, block,
                                fmt::format("{} {} + {} {}", weight.name, st::shape_text(weight.shape),
                                            tensors[t].name, st::shape_text(tensors[t].shape))});
      it = out.end() - 1;
    }
    if (it->block != block) it->block = 0;
    ++it->pairs;
  }
}

std::array<std::size_t, 3> packed_members(const Names& names, const Module& module) {
  std::array<std::size_t, 3> members{npos, npos, npos};
  for (const std::size_t t : module.tensors) {
    for (std::size_t m = 0; m < 3; ++m) {
      if (names.names[t].parts.back() == names.packed[m]) members[m] = t;
    }
  }
  return members;
}

// Tensors other than parameters, grouped by their module path, in order of first tensor.
std::vector<Module> group_modules(const Names& names) {
  std::vector<Module> modules;
  std::unordered_map<std::string_view, std::size_t> by_path;
  for (std::size_t t = 0; t < names.names.size(); ++t) {
    const Name& n = names.names[t];
    if (n.bare) continue;
    const auto [it, fresh] = by_path.try_emplace(n.parent, modules.size());
    if (fresh) modules.push_back(Module{n.parent, n.key, {}, false, npos, npos, 0, 0});
    Module& module = modules[it->second];
    module.tensors.push_back(t);
    module.owned = module.owned || n.scope != npos;
  }
  return modules;
}

using PackingIndex = std::map<std::tuple<PackKind, std::uint64_t, std::uint64_t>, std::size_t>;

// A complete triple: the packing it fits (found or added), or a problem.
void add_triple(std::span<const TensorHeader> tensors, const Names& names,
                const std::array<std::size_t, 3>& members, Module& module, PackingIndex& index,
                std::vector<Packing>& packings, Diagnostics& problems) {
  const auto fit =
      fit_triple(tensors[members[0]].shape, tensors[members[1]].shape, tensors[members[2]].shape);
  if (!fit) {
    problems.add(
        fmt::format("{0}: {1} {4}, {2} {5}, {3} {6} fit neither GPTQ ({1} [in/P, out], {2} [in/G, out/P], "
                    "{3} [in/G, out]) nor AWQ ({1} [in, out/P])",
                    module.path, names.packed[0], names.packed[1], names.packed[2],
                    st::shape_text(tensors[members[0]].shape), st::shape_text(tensors[members[1]].shape),
                    st::shape_text(tensors[members[2]].shape)));
    return;
  }
  const auto [it, fresh] = index.try_emplace({fit->kind, fit->pack, fit->group}, packings.size());
  if (fresh) {
    packings.push_back(
        Packing{fit->kind, fit->pack, fit->group, {}, 0, std::string(module.path), layout_name(*fit)});
  }
  Packing& packing = packings[it->second];
  ++packing.groups;
  for (std::size_t m = 0; m < 3; ++m) {
    auto& dtypes = packing.dtypes[m];
    const st::DType dtype = tensors[members[m]].dtype;
    if (std::find(dtypes.begin(), dtypes.end(), dtype) == dtypes.end()) dtypes.push_back(dtype);
  }
  module.packing = it->second;
  module.out = fit->out;
  module.in = fit->in;
}

// A layout claims its suffixes in every name: one set of factors, no member outside a triple.
void check_packings(std::span<const TensorHeader> tensors, const Names& names,
                    const std::vector<Packing>& packings, const std::vector<std::string>& partial,
                    Diagnostics& problems) {
  if (packings.size() > 1) {
    std::vector<std::string> kinds;
    for (const Packing& p : packings) kinds.push_back(packing_text(p));
    problems.add(
        fmt::format("packed triples disagree: {}; a layout claims the suffixes {}, {} and {} in every name, "
                    "so one set of factors can be described",
                    fmt::join(kinds, "; "), names.packed[0], names.packed[1], names.packed[2]));
  }
  for (const std::string& p : partial) problems.add(p + " (a layout needs all three)");
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const Name& n = names.names[t];
    const bool packed_suffix =
        std::find(names.packed.begin(), names.packed.end(), n.key) != names.packed.end();
    if (n.bare && packed_suffix) {
      problems.add(fmt::format("{}: a parameter named like a packed member (a layout would claim it)",
                               tensors[t].name));
    }
  }
}

}  // namespace

Modules find_modules(std::span<const TensorHeader> tensors, const Names& names) {
  Modules out;
  out.modules = group_modules(names);
  Diagnostics problems(ErrorKind::input);
  std::vector<std::string> partial;  // modules with some packed members only
  PackingIndex index;
  for (Module& module : out.modules) {
    const auto members = packed_members(names, module);
    const auto present =
        std::count_if(members.begin(), members.end(), [](std::size_t m) { return m != npos; });
    if (present == 0) {
      find_main(tensors, module);
      if (module.main != npos) note_block_scales(tensors, module, out.block_scales);
    } else if (present < 3) {
      partial.push_back(fmt::format("{}: has {} of the packed members {}", module.path, present,
                                    fmt::join(names.packed, ", ")));
    } else {
      add_triple(tensors, names, members, module, index, out.packings, problems);
    }
  }
  if (!out.packings.empty()) check_packings(tensors, names, out.packings, partial, problems);
  problems.check("cannot describe the packed tensors of this checkpoint");
  for (Packing& p : out.packings) {
    for (auto& dtypes : p.dtypes) std::sort(dtypes.begin(), dtypes.end());
  }
  // Partial triples without any layout are plain tensors.
  for (Module& module : out.modules) {
    if (module.packing == npos && module.main == npos) find_main(tensors, module);
  }
  return out;
}

}  // namespace shardwise::scaffold
