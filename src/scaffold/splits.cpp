// Split guesses for the scaffold, one per key, from shapes alone. The hidden size is the most common
// `in` of the checkpoint's weights: a weight that reads it is column-parallel (`out`), one that
// writes it is row-parallel (`in`). A guess is kept only where every tensor of the key divides
// over mp ranks without cutting a packing unit, a quantisation group or a scale block; otherwise
// the other split, else replicate. Tensors beside a weight that do not follow its split (a bias
// along the other dim, a per-tensor scale) are replicated by an override.
#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "scaffold/model.hpp"

namespace shardwise::scaffold {
namespace {

std::uint64_t hidden_size(const Modules& modules) {
  std::map<std::uint64_t, std::uint64_t> votes;
  for (const Module& m : modules.modules) {
    if (m.has_weight()) ++votes[m.in];
  }
  std::uint64_t best = 0, most = 0;
  for (const auto& [in, count] : votes) {
    if (count >= most) best = in, most = count;
  }
  return best;
}

// Whether `size` is a multiple of mp * unit (so each of mp ranks gets whole units).
bool divides(std::uint64_t size, std::uint64_t mp, std::uint64_t unit) {
  std::uint64_t step = 0;
  return !__builtin_mul_overflow(mp, unit, &step) && step != 0 && size % step == 0;
}

// Divisors a packed layout puts on the split axis of its members (e.g. GPTQ zeros: out/P).
std::vector<std::uint64_t> packed_divisors(const Packing& p, Split split) {
  if (split == Split::out)
    return p.kind == PackKind::gptq ? std::vector<std::uint64_t>{1, p.pack}
                                    : std::vector<std::uint64_t>{p.pack};
  return p.kind == PackKind::gptq ? std::vector<std::uint64_t>{p.pack, p.group}
                                  : std::vector<std::uint64_t>{p.group};
}

// Whether one module can take `split` over mp ranks. Tensors that must be replicated instead are
// added to `leaves` (leaf -> reason); `why` says what does not divide.
bool module_fits(std::span<const TensorHeader> tensors, const Names& names, const Modules& modules,
                 const Module& module, Split split, std::uint64_t mp,
                 std::map<std::string, std::string>& leaves, std::string& why) {
  if (split == Split::replicate) return true;
  const bool on_out = split == Split::out;
  const std::uint64_t m = on_out ? module.out : module.in, other = on_out ? module.in : module.out;
  const std::string_view axis = split_name(split);
  if (module.packing != npos) {
    for (const std::uint64_t n : packed_divisors(modules.packings[module.packing], split)) {
      if (!divides(m, mp, n)) {
        why = fmt::format("{} packed: {}={} is not a multiple of mp*{}={}", module.path, axis, m, n, mp * n);
        return false;
      }
    }
  } else if (!divides(m, mp, 1)) {
    why = fmt::format("{}: {}={} is not a multiple of mp={}", tensors[module.main].name, axis, m, mp);
    return false;
  }
  for (const std::size_t t : module.tensors) {
    if (t == module.main) continue;
    const auto& shape = tensors[t].shape;
    const std::string leaf(names.names[t].parts.back());
    if (module.packing != npos &&
        std::find(names.packed.begin(), names.packed.end(), leaf) != names.packed.end())
      continue;
    const std::size_t d = shape.size() == 1 ? 0 : (on_out ? 0 : 1);
    const std::uint64_t a = shape.empty() ? 0 : shape[d];
    const auto replicate = [&](std::string reason) { leaves.try_emplace(leaf, std::move(reason)); };
    if (shape.empty() || a == 0) {
      replicate(fmt::format("{} {} has no entries on {}", leaf, st::shape_text(shape), axis));
    } else if (shape.size() == 1 && !on_out) {
      // The planner splits `in` on dim 1: a 1-D tensor under a row split goes whole to every rank.
      replicate(fmt::format("{} {} has one dim, and `in` splits dim 1", leaf, st::shape_text(shape)));
    } else if (a == m) {
      continue;  // follows the weight (m divides, checked above)
    } else if (shape.size() == 1 && a == other) {
      replicate(fmt::format("{} {} runs along {}, the split is {}", leaf, st::shape_text(shape),
                            on_out ? "in" : "out", axis));
    } else if (a == 1) {
      replicate(fmt::format("{} {} has one entry on {}", leaf, st::shape_text(shape), axis));
    } else if (shape.size() == 1) {
      replicate(fmt::format("{} {} does not run along {}", leaf, st::shape_text(shape), axis));
    } else if (m % a == 0) {
      const std::uint64_t block = m / a;  // a scale per block of `block` entries of the weight
      if (!divides(m, mp, block)) {
        why = fmt::format("{} {}: blocks of {} on {}={} do not divide over mp={}", tensors[t].name,
                          st::shape_text(shape), block, axis, m, mp);
        return false;
      }
    } else {
      why = fmt::format("{} {}: {} on dim {} is neither {}={} nor a divisor of it", tensors[t].name,
                        st::shape_text(shape), a, d, axis, m);
      return false;
    }
  }
  return true;
}

struct Guess {
  Split split = Split::replicate;
  std::string reason;
};

Guess direction(const Module& ref, std::uint64_t hidden, const std::vector<Scope>& scopes) {
  const std::string shape = fmt::format("[{}, {}]", ref.out, ref.in);
  for (const Scope& s : scopes) {
    if (ref.out == s.count)
      return {Split::replicate, fmt::format("{}: out = {} (a router?)", shape, s.param)};
  }
  if (ref.in == hidden && ref.out != hidden)
    return {Split::out, fmt::format("{} reads the hidden size", shape)};
  if (ref.out == hidden && ref.in != hidden)
    return {Split::in, fmt::format("{} writes the hidden size", shape)};
  if (ref.out == hidden) return {Split::out, fmt::format("{} square: in if it writes the residual", shape)};
  return {Split::out, fmt::format("{}: neither dim is the hidden size {}", shape, hidden)};
}

KeyRow decide_key(std::span<const TensorHeader> tensors, const Names& names, const Modules& modules,
                  const std::vector<const Module*>& mods, std::uint64_t hidden, std::uint64_t mp) {
  KeyRow row;
  const Module* ref = nullptr;
  std::uint64_t owned = 0;
  for (const Module* m : mods) {
    owned += m->owned ? 1 : 0;
    if (m->has_weight() && (ref == nullptr || (ref->owned && !m->owned))) ref = m;
  }
  std::string where = fmt::format("{} module{}", mods.size(), mods.size() == 1 ? "" : "s");
  if (owned != 0) where += fmt::format(", {} owned", owned);
  if (ref == nullptr) {
    row.comment = fmt::format("{}; no weight of 2+ dims: replicate", where);
    return row;
  }
  const Guess guess = direction(*ref, hidden, names.scopes);
  std::vector<Split> candidates{guess.split};
  if (guess.split != Split::replicate) {
    candidates.push_back(guess.split == Split::out ? Split::in : Split::out);
    candidates.push_back(Split::replicate);
  }
  std::string refused;
  for (const Split split : candidates) {
    std::map<std::string, std::string> leaves;
    std::string why;
    const bool fits = std::all_of(mods.begin(), mods.end(), [&](const Module* m) {
      return m->owned || module_fits(tensors, names, modules, *m, split, mp, leaves, why);
    });
    if (!fits) {
      if (refused.empty()) refused = fmt::format("; not {} at mp={}: {}", split_name(split), mp, why);
      continue;
    }
    row.split = split;
    for (auto& [leaf, reason] : leaves) {
      row.replicated_leaves.push_back(leaf);
      row.leaf_reasons.push_back(std::move(reason));
    }
    break;
  }
  row.comment = fmt::format("guess: {}{}; {}", guess.reason, refused, where);
  return row;
}

}  // namespace

std::vector<KeyRow> guess_splits(std::span<const TensorHeader> tensors, const Names& names,
                                 const Modules& modules, std::uint64_t mp) {
  const std::uint64_t hidden = hidden_size(modules);
  std::vector<std::string_view> order;  // keys in order of first appearance
  std::unordered_map<std::string_view, std::vector<const Module*>> by_key;
  std::unordered_map<std::string_view, std::vector<std::size_t>> parameters;
  std::unordered_map<std::string_view, std::size_t> module_of;  // parent path -> module
  for (std::size_t i = 0; i < modules.modules.size(); ++i) module_of.emplace(modules.modules[i].path, i);
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const Name& n = names.names[t];
    if (!by_key.count(n.key) && !parameters.count(n.key)) order.push_back(n.key);
    if (n.bare) {
      parameters[n.key].push_back(t);
      continue;
    }
    auto& mods = by_key[n.key];
    const Module* m = &modules.modules[module_of.at(n.parent)];
    if (std::find(mods.begin(), mods.end(), m) == mods.end()) mods.push_back(m);
  }
  std::vector<KeyRow> rows;
  for (const std::string_view key : order) {
    const auto params = parameters.find(key);
    if (params != parameters.end()) {
      const TensorHeader& first = tensors[params->second.front()];
      rows.push_back(
          KeyRow{std::string(key),
                 Split::replicate,
                 fmt::format("guess: a parameter ({} {}, {} tensors): replicate", first.name,
                             st::shape_text(first.shape), params->second.size() + by_key[key].size()),
                 {},
                 {}});
      continue;
    }
    rows.push_back(decide_key(tensors, names, modules, by_key.at(key), hidden, mp));
    rows.back().key = std::string(key);
  }
  return rows;
}

}  // namespace shardwise::scaffold
