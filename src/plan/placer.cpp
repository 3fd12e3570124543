#include "plan/placer.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include <shardwise/plan/plan_view.hpp>
#include "plan/ownership_scopes.hpp"

namespace shardwise::plan::detail {
namespace {

// Sizes come from untrusted headers: a sum that does not fit is the input's fault.
std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, std::string_view what) {
  std::uint64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    throw Error(ErrorKind::input, fmt::format("{}: byte count overflows 64 bits", what));
  }
  return sum;
}

// PlannedTensor::source and ::rule.
constexpr std::size_t kMaxIndex = std::numeric_limits<std::uint32_t>::max();

std::string dim_kind(int dim, std::uint64_t unit, std::size_t rank) {
  std::string kind = unit > 1 ? "packed " : "";
  if (rank == 1) return kind + "entries";
  if (dim == 0) return kind + "rows";
  if (dim == 1) return kind + "columns";
  return kind + fmt::format("entries of dim {}", dim);
}

}  // namespace

std::string rule_label(const rules::RuleRef& rule) {
  if (rule.where.file.empty()) return rule.label;
  return fmt::format("{} ({})", rule.label, rule.where.str());
}

std::size_t RuleLabels::operator()(const rules::RuleRef& rule) {
  const auto [it, fresh] = index_.try_emplace(&rule, labels_.size());
  if (fresh) labels_.push_back(rule_label(rule));
  return it->second;
}

Slice make_slice(int dim, std::uint64_t begin, std::uint64_t end, std::uint64_t size) {
  if (begin == 0 && end == size) return Slice{};
  return Slice{dim, begin, end};
}

std::string format_ranks(const std::vector<std::uint64_t>& ranks) {
  std::string text;
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!text.empty()) text += ',';
    text += j > i ? fmt::format("{}-{}", ranks[i], ranks[j]) : fmt::format("{}", ranks[i]);
    i = j + 1;
  }
  return text;
}

std::string Placer::describe(std::size_t source) const {
  const Source& src = plan_.sources[source];
  const std::string& path = plan_.input_files[src.file];
  return fmt::format("{} ({})", src.name, std::string_view(path).substr(path.rfind('/') + 1));
}

void Placer::defer_owned(Target& target, st::DType dtype, Cast cast) {
  const Owner& owner = *target.owner;
  if (const auto count = scopes_ != nullptr ? scopes_->known_count(owner.scope, owner.index) : std::nullopt) {
    add_owned(plan::owner_rank(owner.index, *count, mp_), target, dtype, cast,
              plan::Placement{plan::Placement::Kind::owned, -1, 1, owner.index, *count});
    return;
  }
  if (owned_.empty()) owned_.reserve(tensors_);
  owned_.push_back(Deferred{std::move(target.output), target.source, target.rule, *target.owner,
                            target.pending_transform, target.permutation, dtype, cast});
}

void Placer::place_owned(const OwnershipScopes& scopes) {
  // Most tensors of a large checkpoint may be owned, each by one rank: each rank's list grows
  // once, to its size, rather than by doubling while the deferred list is held too.
  std::vector<std::size_t> given(mp_);
  for (const Deferred& owned : owned_) {
    if (const auto count = scopes.count(owned.owner.scope)) {
      ++given[plan::owner_rank(owned.owner.index, *count, mp_)];
    }
  }
  for (std::size_t rank = 0; rank < given.size(); ++rank) {
    std::vector<PlannedTensor>& tensors = plan_.outputs[rank].tensors;
    tensors.reserve(tensors.size() + given[rank]);
  }
  for (Deferred& owned : owned_) {
    const Owner& owner = owned.owner;
    if (const auto count = scopes.count(owner.scope)) {
      Target target{owned.source, std::move(owned.output), owned.rule, rules::Split::replicate, std::nullopt};
      target.pending_transform = owned.pending_transform;
      target.permutation = owned.permutation;
      add_owned(plan::owner_rank(owner.index, *count, mp_), target, owned.dtype, owned.cast,
                plan::Placement{plan::Placement::Kind::owned, -1, 1, owner.index, *count});
    }
  }
  std::vector<Deferred>().swap(owned_);
}

Name Placer::name(std::size_t source, std::string_view output) {
  const Name& own = plan_.sources[source].name;
  if (own == output) return own;
  if (!plan_.name_arena) return Name(output);
  return Name::borrowed(plan_.name_arena->add(output));
}

void Placer::add(std::uint64_t rank, const Target& target, Name name, st::DType dtype, Shape shape,
                 Slice slice, Cast cast, plan::Placement placement) {
  OutputFile& out = plan_.outputs[rank];
  if (cast == Cast::reinterpret && !shape.empty()) {
    // The widths were checked by the rules (same or dividing) and the planner (a last dim).
    shape.back() *= st::dtype_bits(plan_.sources[target.source].dtype) / st::dtype_bits(dtype);
  } else if (cast == Cast::requantize_fp4_weight && shape.size() == 2) {
    shape[1] *= 2;  // two FP4 codes per byte -> one E4M3 code each
  } else if (cast == Cast::requantize_fp4_scale && shape.size() == 2) {
    // One scale per 1 x 32 -> one per 128 x 128 (the planner checked the divisions).
    shape = {shape[0] / 128, shape[1] * 32 / 128};
  }
  const auto bytes = st::byte_size(dtype, shape);
  if (!bytes) {
    throw Error(ErrorKind::input, fmt::format("{}: the size of {}{} overflows", name, st::dtype_name(dtype),
                                              st::shape_text(shape)));
  }
  out.bytes = checked_add(out.bytes, *bytes, out.file);
  if (target.source > kMaxIndex || target.rule > kMaxIndex) {
    throw Error(ErrorKind::input, fmt::format("{}: the plan holds its tensors' sources and rules by 4-byte "
                                              "indices, and this is source {}, rule {}",
                                              name, target.source, target.rule));
  }
  out.tensors.push_back(PlannedTensor{std::move(name), std::move(shape), *bytes,
                                      static_cast<std::uint32_t>(target.source),
                                      static_cast<std::uint32_t>(target.rule), slice, dtype, cast,
                                      target.pending_transform, placement, kNoComposite, target.permutation});
}

void Placer::add_owned(std::uint64_t rank, Target& target, st::DType dtype, Cast cast,
                       plan::Placement placement) {
  add(rank, target, std::move(target.output), dtype, plan_.sources[target.source].shape, Slice{}, cast,
      placement);
}

void Placer::add_everywhere(Target& target, st::DType dtype, Cast cast) {
  const Shape& shape = plan_.sources[target.source].shape;
  const Name& name = target.output;
  for (std::uint64_t rank = 0; rank < mp_; ++rank) {
    add(rank, target, name, dtype, shape, Slice{}, cast);
    if (rank > 0) {
      plan_.replicated_bytes =
          checked_add(plan_.replicated_bytes, plan_.outputs[rank].tensors.back().bytes, "replicated bytes");
    }
  }
}

bool Placer::add_split(Target& target, int dim, std::uint64_t unit, rules::Split axis, st::DType dtype,
                       Cast cast) {
  const Source& src = plan_.sources[target.source];
  const auto d = static_cast<std::size_t>(dim);
  if (d >= src.shape.size()) {
    problems_.add(fmt::format("{}: cannot split {} over mp={}: it has no dim {} (shape {})", src.name,
                              rules::split_name(axis), mp_, dim, st::shape_text(src.shape)));
    return false;
  }
  const std::uint64_t size = src.shape[d];
  if (size % mp_ != 0) {
    const std::string head = fmt::format("{}: {} {} cannot be split over mp={}", src.name, size,
                                         dim_kind(dim, unit, src.shape.size()), mp_);
    const std::uint64_t logical = size * unit;
    if (unit == 1) {
      problems_.add(fmt::format("{} (dim {} of {}: {} is not a multiple of {})", head, dim,
                                st::shape_text(src.shape), size, mp_));
    } else if (logical % mp_ != 0) {
      problems_.add(fmt::format("{} ({}={} is not a multiple of {}, packing {})", head,
                                rules::split_name(axis), logical, mp_, unit));
    } else {
      problems_.add(fmt::format("{} ({}={}, {} per rank, packing {})", head, rules::split_name(axis), logical,
                                logical / mp_, unit));
    }
    return false;
  }
  // A reinterpretation scales the last dim: one source element is `ratio` output elements.
  const std::uint64_t ratio = cast == Cast::reinterpret && d + 1 == src.shape.size()
                                  ? st::dtype_bits(src.dtype) / st::dtype_bits(dtype)
                                  : 1;
  const Name& name = target.output;
  for (std::uint64_t rank = 0; rank < mp_; ++rank) {
    const plan::SplitRange range = plan::split_range(size, rank, mp_);
    Shape shape = src.shape;
    shape[d] = range.end - range.begin;
    add(rank, target, name, dtype, std::move(shape), make_slice(dim, range.begin, range.end, size), cast,
        plan::Placement{plan::Placement::Kind::split, dim, ratio, 0, 0});
  }
  return true;
}

bool Placer::add_split_units(Target& target, int dim, rules::Split axis, st::DType dtype, Cast cast) {
  const Source& src = plan_.sources[target.source];
  const auto d = static_cast<std::size_t>(dim);
  const std::uint64_t units = target.units;
  const std::string named =
      target.units_param.empty() ? fmt::format("{}", units) : fmt::format("{}={}", target.units_param, units);
  if (d >= src.shape.size()) {
    problems_.add(fmt::format("{}: cannot split {} over mp={}: it has no dim {} (shape {})", src.name,
                              rules::split_name(axis), mp_, dim, st::shape_text(src.shape)));
    return false;
  }
  const std::uint64_t size = src.shape[d];
  if (units == 0 || size % units != 0) {
    problems_.add(fmt::format("{}: {} {} are not {} whole units (dim {} of {}; units {})", src.name, size,
                              dim_kind(dim, 1, src.shape.size()), units, dim, st::shape_text(src.shape),
                              named));
    return false;
  }
  if (units >= mp_) {
    if (units % mp_ != 0) {
      problems_.add(fmt::format("{}: {} units ({}) cannot be split over mp={}: {} is not a multiple of {}",
                                src.name, units, named, mp_, units, mp_));
      return false;
    }
    return add_split(target, dim, 1, axis, dtype, cast);
  }
  if (mp_ % units != 0) {
    problems_.add(
        fmt::format("{}: {} units ({}) for mp={}: with fewer units than ranks, each unit goes to "
                    "mp / units ranks, and {} is not a multiple of {}",
                    src.name, units, named, mp_, mp_, units));
    return false;
  }
  const std::uint64_t replicas = mp_ / units;
  const std::uint64_t ratio = cast == Cast::reinterpret && d + 1 == src.shape.size()
                                  ? st::dtype_bits(src.dtype) / st::dtype_bits(dtype)
                                  : 1;
  const Name& name = target.output;
  for (std::uint64_t rank = 0; rank < mp_; ++rank) {
    const plan::SplitRange range = plan::split_range(size, rank / replicas, units);
    Shape shape = src.shape;
    shape[d] = range.end - range.begin;
    add(rank, target, name, dtype, std::move(shape), make_slice(dim, range.begin, range.end, size), cast,
        plan::Placement{plan::Placement::Kind::split, dim, ratio, 0, 0, replicas});
    if (rank % replicas != 0) {
      plan_.replicated_bytes =
          checked_add(plan_.replicated_bytes, plan_.outputs[rank].tensors.back().bytes, "replicated bytes");
    }
  }
  return true;
}

}  // namespace shardwise::plan::detail
