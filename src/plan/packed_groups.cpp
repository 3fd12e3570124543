#include "plan/packed_groups.hpp"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include <shardwise/rules/explain.hpp>

#include "plan/plan_view.hpp"

namespace shardwise::plan::detail {
namespace {

using rules::Split;

std::string where(const Placer& placer, const Target& target) {
  const Source& src = placer.source(target.source);
  return fmt::format("{} {}{}", src.name, st::dtype_name(src.dtype), detail::shape_text(src.shape));
}

// The cast that writes `from` as `to`; nullopt when the engine has no such conversion.
std::optional<Cast> cast_between(st::DType from, std::optional<st::DType> to) {
  if (!to || *to == from) return Cast::none;
  if (*to == st::DType::BF16 && from == st::DType::F16) return Cast::f16_to_bf16;
  if (*to == st::DType::BF16 && from == st::DType::F32) return Cast::f32_to_bf16;
  return std::nullopt;
}

// Shape and dtype of one member against its declaration in the layout.
bool check_member(const rules::Layout& layout, const rules::LayoutMember& member, const Target& target,
                  Placer& placer) {
  const Source& src = placer.source(target.source);
  bool ok = true;
  if (src.shape.size() != 2) {
    placer.problems().add(fmt::format("{}: member {} of packed layout {} must have 2 dims, has {}", src.name,
                                      member.suffix, layout.name, detail::shape_text(src.shape)));
    ok = false;
  }
  const auto& allowed = member.allowed_dtypes;
  if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), src.dtype) == allowed.end()) {
    std::vector<std::string_view> names;
    for (st::DType d : allowed) names.push_back(st::dtype_name(d));
    placer.problems().add(fmt::format("{}: dtype {} is not allowed for member {} of packed layout {} (allowed: {})",
                                      src.name, st::dtype_name(src.dtype), member.suffix, layout.name,
                                      fmt::join(names, ", ")));
    ok = false;
  } else if (!cast_between(src.dtype, member.cast_to)) {
    placer.problems().add(fmt::format("{}: cannot cast {} to {} (member {} of packed layout {}); the casts "
                                      "supported are F16->BF16 and F32->BF16",
                                      src.name, st::dtype_name(src.dtype), st::dtype_name(*member.cast_to),
                                      member.suffix, layout.name));
    ok = false;
  }
  return ok;
}

// The value most members give for one axis (the first of equals), for the hint below.
std::uint64_t majority(const std::vector<std::uint64_t>& claims) {
  std::uint64_t best = claims.front();
  std::size_t best_count = 0;
  for (const std::uint64_t value : claims) {
    const auto count = static_cast<std::size_t>(std::count(claims.begin(), claims.end(), value));
    if (count > best_count) best = value, best_count = count;
  }
  return best;
}

// The shape expression ("[in, out/8]") that `shape` fits for the logical [out, in], trying the
// member's own axes first, then swapped; "" when none does.
std::string fitting_expression(const rules::LayoutMember& member, const st::Shape& shape,
                               const std::array<std::uint64_t, 2>& logical) {
  for (const bool swapped : {false, true}) {
    std::array<rules::MemberDim, 2> dims{member.dims[0], member.dims[1]};
    if (swapped) std::swap(dims[0].axis, dims[1].axis);
    bool fits = true;
    for (std::size_t d = 0; d < 2 && fits; ++d) {
      const std::uint64_t whole = logical[dims[d].axis == Split::out ? 0 : 1];
      fits = shape[d] != 0 && whole % shape[d] == 0;
      if (fits) dims[d].divisor = whole / shape[d];
    }
    if (fits)
      return fmt::format("[{}, {}]", rules::describe_member_dim(dims[0]),
                         rules::describe_member_dim(dims[1]));
  }
  return "";
}

// Members that disagree do not make a group "incomplete": they were packed differently than the
// layout says. For each member that disagrees with the majority: the expression its shape fits.
std::string packing_hint(const rules::Layout& layout, const std::vector<std::optional<Target>>& members,
                         const std::vector<std::array<std::uint64_t, 2>>& values, const Placer& placer) {
  std::array<std::vector<std::uint64_t>, 2> claims;
  for (std::size_t m = 0; m < members.size(); ++m) {
    for (std::size_t d = 0; d < 2; ++d)
      claims[layout.members[m].dims[d].axis == Split::out ? 0 : 1].push_back(values[m][d]);
  }
  const std::array<std::uint64_t, 2> logical{majority(claims[0]), majority(claims[1])};
  std::vector<std::string> hints;
  for (std::size_t m = 0; m < members.size(); ++m) {
    const rules::LayoutMember& member = layout.members[m];
    bool agrees = true;
    for (std::size_t d = 0; d < 2; ++d)
      agrees = agrees && values[m][d] == logical[member.dims[d].axis == Split::out ? 0 : 1];
    if (agrees) continue;
    const std::string layout_says = fmt::format("[{}, {}]", rules::describe_member_dim(member.dims[0]),
                                                rules::describe_member_dim(member.dims[1]));
    const std::string fits = fitting_expression(member, placer.source(members[m]->source).shape, logical);
    hints.push_back(
        fits.empty() ? fmt::format("{} fits no [out|in/N, out|in/N] of them", member.suffix)
                     : fmt::format("{} fits {}, where the layout says {}", member.suffix, fits, layout_says));
  }
  return fmt::format(
      "with out={} and in={}, as most members say, {}: the checkpoint is packed differently than layout "
      "{} describes (another packing or group size: write a layout for it)",
      logical[0], logical[1], fmt::join(hints, "; "), layout.name);
}

// The logical [out, in] of a group from its members' shapes (size = logical / divisor). An axis no
// member mentions stays unset. Returns nullopt after reporting members that disagree.
std::optional<std::array<std::optional<std::uint64_t>, 2>> derive_logical(
    const rules::Layout& layout, const std::vector<std::optional<Target>>& members, const std::string& group,
    Placer& placer) {
  std::array<std::optional<std::uint64_t>, 2> logical;
  std::array<bool, 2> disagree{false, false};
  std::vector<std::array<std::uint64_t, 2>> values(members.size());  // per member and dim
  for (std::size_t m = 0; m < members.size(); ++m) {
    const Source& src = placer.source(members[m]->source);
    for (std::size_t d = 0; d < 2; ++d) {
      const rules::MemberDim& dim = layout.members[m].dims[d];
      const std::size_t axis = dim.axis == Split::out ? 0 : 1;
      if (__builtin_mul_overflow(src.shape[d], dim.divisor, &values[m][d])) {
        placer.problems().add(fmt::format("{}: {} {} overflows 64 bits", src.name, rules::split_name(dim.axis),
                                          src.shape[d]));
        return std::nullopt;
      }
      if (logical[axis] && *logical[axis] != values[m][d]) disagree[axis] = true;
      if (!logical[axis]) logical[axis] = values[m][d];
    }
  }
  if (!disagree[0] && !disagree[1]) return logical;
  std::vector<std::string> disagreements;
  for (std::size_t axis = 0; axis < 2; ++axis) {
    if (!disagree[axis]) continue;
    const Split split = axis == 0 ? Split::out : Split::in;
    std::vector<std::string> claims;  // "MEMBER NAME I32[512, 64] gives in=4096"
    for (std::size_t m = 0; m < members.size(); ++m) {
      for (std::size_t d = 0; d < 2; ++d) {
        if (layout.members[m].dims[d].axis != split) continue;
        claims.push_back(fmt::format("{} {} gives {}={}", layout.members[m].suffix, where(placer, *members[m]),
                                     rules::split_name(split), values[m][d]));
      }
    }
    disagreements.push_back(fmt::format("on {}: {}", rules::split_name(split), fmt::join(claims, "; ")));
  }
  placer.problems().add(fmt::format("{}: the members of packed layout {} disagree {}; {}", group, layout.name,
                                    fmt::join(disagreements, "; "),
                                    packing_hint(layout, members, values, placer)));
  return std::nullopt;
}

bool same_placement(const Target& a, const Target& b) {
  if (a.split != b.split || a.owner.has_value() != b.owner.has_value()) return false;
  return !a.owner || (a.owner->index == b.owner->index && a.owner->scope == b.owner->scope);
}

std::string placement_text(const Target& t) {
  if (t.owner) return fmt::format("owned, index {}", t.owner->index);
  return fmt::format("split {}", rules::split_name(t.split));
}

}  // namespace

PackedGroups::PackedGroups(std::size_t members) { index_.reserve(members); }

void PackedGroups::add(const rules::Decision& decision, Target target, Placer& placer) {
  const rules::Layout& layout = *decision.layout;
  const auto member = static_cast<std::size_t>(decision.member - layout.members.data());
  // Members of a group are usually adjacent in name order: try the last group before hashing.
  std::size_t index = last_;
  if (index >= groups_.size() || groups_[index].layout != &layout || groups_[index].name != decision.group) {
    if (const auto it = index_.find(Key{&layout, decision.group}); it != index_.end()) {
      index = it->second;
    } else {
      index = groups_.size();
      groups_.push_back(Group{&layout, decision.group, std::vector<std::optional<Target>>(layout.members.size())});
      index_.emplace(Key{&layout, groups_.back().name}, index);
    }
    last_ = index;
  }
  Group& group = groups_[index];
  std::optional<Target>& slot = group.members[member];
  if (slot) {
    placer.problems().add(fmt::format("{}: member {} of packed layout {} is given twice, by {} and {}", group.name,
                                      decision.member->suffix, layout.name, placer.describe(slot->source),
                                      placer.describe(target.source)));
    group.state = State::broken;
    return;
  }
  slot = std::move(target);
  if (group.state == State::open && ++group.present == group.members.size()) {
    place(group, placer);
    group.state = State::placed;
  }
}

void PackedGroups::report_incomplete(Placer& placer) const {
  for (const Group& group : groups_) {
    if (group.state != State::open) continue;
    std::vector<std::string> missing, present;
    for (std::size_t m = 0; m < group.members.size(); ++m) {
      if (!group.members[m]) {
        missing.push_back(group.layout->members[m].suffix);
      } else {
        present.push_back(placer.describe(group.members[m]->source));
      }
    }
    placer.problems().add(fmt::format("{}: incomplete packed group ({}): missing {}; present: {}", group.name,
                                      group.layout->name, fmt::join(missing, ", "), fmt::join(present, ", ")));
  }
}

// Checks a complete group and places its members; their output names are moved into the plan.
void PackedGroups::place(Group& group, Placer& placer) {
  const rules::Layout& layout = *group.layout;
  bool ok = true;
  for (std::size_t m = 0; m < group.members.size(); ++m) {
    ok = check_member(layout, layout.members[m], *group.members[m], placer) && ok;
  }
  if (!ok || !derive_logical(layout, group.members, group.name, placer)) return;
  const Target& first = *group.members.front();
  for (const auto& member : group.members) {
    if (!same_placement(first, *member)) {
      placer.problems().add(fmt::format("{}: members of one packed group are placed differently: {} is {}, {} is {}",
                                        group.name, placer.source(first.source).name, placement_text(first),
                                        placer.source(member->source).name, placement_text(*member)));
      return;
    }
  }
  const Split split = first.split;
  for (std::size_t m = 0; m < group.members.size(); ++m) {
    const rules::LayoutMember& decl = layout.members[m];
    Target& target = *group.members[m];
    const st::DType from = placer.source(target.source).dtype;
    const Cast cast = *cast_between(from, decl.cast_to);
    const st::DType dtype = decl.cast_to.value_or(from);
    if (first.owner) {
      placer.defer_owned(target, dtype, cast);
      continue;
    }
    std::array<int, 2> dims{};  // the member's dims on the split axis
    std::size_t on_axis = 0;
    for (int d = 0; d < 2; ++d) {
      if (split != Split::replicate && decl.dims[d].axis == split) dims[on_axis++] = d;
    }
    if (on_axis == 0) {
      placer.add_everywhere(target, dtype, cast);
    } else if (on_axis == 2) {
      placer.problems().add(fmt::format("{}: cannot split {}: both dims of member {} of packed layout {} are on it",
                                        placer.source(target.source).name, rules::split_name(split), decl.suffix,
                                        layout.name));
    } else {
      placer.add_split(target, dims[0], decl.dims[dims[0]].divisor, split, dtype, cast);
    }
  }
}

}  // namespace shardwise::plan::detail
