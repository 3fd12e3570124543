#include "plan/packed_groups.hpp"

#include <algorithm>
#include <array>
#include <limits>

#include <fmt/format.h>

#include <shardwise/rules/explain.hpp>

#include <shardwise/plan/plan_view.hpp>

namespace shardwise::plan::detail {
namespace {

using rules::Split;

std::string where(const Placer& placer, const Target& target) {
  const Source& src = placer.source(target.source);
  return fmt::format("{} {}{}", src.name, st::dtype_name(src.dtype), st::shape_text(src.shape));
}

// The cast that writes `from` as `to`; nullopt when the engine has no such conversion.
std::optional<Cast> cast_between(st::DType from, std::optional<st::DType> to) {
  if (!to || *to == from) return Cast::none;
  if (*to == st::DType::BF16 && from == st::DType::F16) return Cast::f16_to_bf16;
  if (*to == st::DType::BF16 && from == st::DType::F32) return Cast::f32_to_bf16;
  return std::nullopt;
}

using Divisors = std::vector<std::vector<std::uint64_t>>;

// "[in/group_size, out]" with the parameters' values: "[in/group_size, out] (group_size=64)".
std::string layout_says(const rules::LayoutMember& member, const std::vector<std::uint64_t>& divisors) {
  std::vector<std::string> values;
  for (std::size_t d = 0; d < member.dims.size(); ++d) {
    const std::string& param = member.dims[d].divisor_param;
    if (!param.empty()) values.push_back(fmt::format("{}={}", param, divisors[d]));
  }
  const std::string shape = rules::describe_member_shape(member);
  return values.empty() ? shape : fmt::format("{} ({})", shape, fmt::join(values, ", "));
}

// Shape and dtype of one member against its declaration in the layout.
bool check_member(const rules::Layout& layout, const rules::LayoutMember& member, const Target& target,
                  Placer& placer) {
  const Source& src = placer.source(target.source);
  bool ok = true;
  if (src.shape.size() != member.dims.size()) {
    placer.problems().add(fmt::format(
        "{}: member {} of packed layout {} must have {} ({}), has {}", src.name, member.suffix, layout.name,
        member.dims.size() == 1 ? "1 dim" : fmt::format("{} dims", member.dims.size()),
        rules::describe_member_shape(member), st::shape_text(src.shape)));
    ok = false;
  }
  const auto& allowed = member.allowed_dtypes;
  if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), src.dtype) == allowed.end()) {
    std::vector<std::string_view> names;
    for (st::DType d : allowed) names.push_back(st::dtype_name(d));
    placer.problems().add(
        fmt::format("{}: dtype {} is not allowed for member {} of packed layout {} (allowed: {})", src.name,
                    st::dtype_name(src.dtype), member.suffix, layout.name, fmt::join(names, ", ")));
    ok = false;
  } else if (!cast_between(src.dtype, member.cast_to)) {
    placer.problems().add(fmt::format(
        "{}: cannot cast {} to {} (member {} of packed layout {}); the casts "
        "supported are F16->BF16 and F32->BF16",
        src.name, st::dtype_name(src.dtype), st::dtype_name(*member.cast_to), member.suffix, layout.name));
    ok = false;
  }
  return ok;
}

std::size_t axis_index(Split axis) { return axis == Split::out ? 0 : 1; }

// The value most members give for one axis (the first of equals), for the hint below; unset when
// no member has a dim on it.
std::optional<std::uint64_t> majority(const std::vector<std::uint64_t>& claims) {
  if (claims.empty()) return std::nullopt;
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
                               const std::array<std::optional<std::uint64_t>, 2>& logical) {
  for (const bool swapped : {false, true}) {
    std::vector<std::string> dims;
    for (std::size_t d = 0; d < member.dims.size(); ++d) {
      Split axis = member.dims[d].axis;
      if (swapped) axis = axis == Split::out ? Split::in : Split::out;
      const std::optional<std::uint64_t> whole = logical[axis_index(axis)];
      if (!whole || shape[d] == 0 || *whole % shape[d] != 0) break;
      const std::uint64_t divisor = *whole / shape[d];
      dims.push_back(divisor == 1 ? std::string(rules::split_name(axis))
                                  : fmt::format("{}/{}", rules::split_name(axis), divisor));
    }
    if (dims.size() == member.dims.size()) return fmt::format("[{}]", fmt::join(dims, ", "));
  }
  return "";
}

// Members that disagree do not make a group "incomplete": they were packed differently than the
// layout says. For each member that disagrees with the majority: the expression its shape fits.
std::string packing_hint(const rules::Layout& layout, const std::vector<std::optional<Target>>& members,
                         const std::vector<std::vector<std::uint64_t>>& values, const Divisors& divisors,
                         const Placer& placer) {
  std::array<std::vector<std::uint64_t>, 2> claims;
  for (std::size_t m = 0; m < members.size(); ++m) {
    const auto& dims = layout.members[m].dims;
    for (std::size_t d = 0; d < dims.size(); ++d) claims[axis_index(dims[d].axis)].push_back(values[m][d]);
  }
  const std::array<std::optional<std::uint64_t>, 2> logical{majority(claims[0]), majority(claims[1])};
  std::vector<std::string> hints;
  for (std::size_t m = 0; m < members.size(); ++m) {
    const rules::LayoutMember& member = layout.members[m];
    bool agrees = true;
    for (std::size_t d = 0; d < member.dims.size(); ++d)
      agrees = agrees && values[m][d] == logical[axis_index(member.dims[d].axis)];
    if (agrees) continue;
    const std::string fits = fitting_expression(member, placer.source(members[m]->source).shape, logical);
    hints.push_back(fits.empty() ? fmt::format("{} fits no out|in/N expression of them", member.suffix)
                                 : fmt::format("{} fits {}, where the layout says {}", member.suffix, fits,
                                               layout_says(member, divisors[m])));
  }
  const auto shown = [](const std::optional<std::uint64_t>& value) {
    return value ? fmt::format("{}", *value) : std::string("?");
  };
  bool parameterised = false;
  for (const rules::LayoutMember& member : layout.members) {
    for (const rules::MemberDim& dim : member.dims)
      parameterised = parameterised || !dim.divisor_param.empty();
  }
  return fmt::format(
      "with out={} and in={}, as most members say, {}: the checkpoint is packed differently than layout "
      "{} describes (another packing or group size: write a layout for it{})",
      shown(logical[0]), shown(logical[1]), fmt::join(hints, "; "), layout.name,
      parameterised ? ", or give its parameter the checkpoint's value" : "");
}

// The logical [out, in] of a group from its members' shapes (size = logical / divisor). An axis no
// member mentions stays unset. Returns nullopt after reporting members that disagree.
std::optional<std::array<std::optional<std::uint64_t>, 2>> derive_logical(
    const rules::Layout& layout, const std::vector<std::optional<Target>>& members, const Divisors& divisors,
    std::string_view group, Placer& placer) {
  std::array<std::optional<std::uint64_t>, 2> logical;
  std::array<bool, 2> disagree{false, false};
  std::vector<std::vector<std::uint64_t>> values(members.size());  // per member and dim
  for (std::size_t m = 0; m < members.size(); ++m) {
    const Source& src = placer.source(members[m]->source);
    const auto& dims = layout.members[m].dims;
    values[m].resize(dims.size());
    for (std::size_t d = 0; d < dims.size(); ++d) {
      const std::size_t axis = axis_index(dims[d].axis);
      if (__builtin_mul_overflow(src.shape[d], divisors[m][d], &values[m][d])) {
        placer.problems().add(fmt::format("{}: {} {} overflows 64 bits", src.name,
                                          rules::split_name(dims[d].axis), src.shape[d]));
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
      const auto& dims = layout.members[m].dims;
      for (std::size_t d = 0; d < dims.size(); ++d) {
        if (dims[d].axis != split) continue;
        claims.push_back(fmt::format("{} {} gives {}={}", layout.members[m].suffix,
                                     where(placer, *members[m]), rules::split_name(split), values[m][d]));
      }
    }
    disagreements.push_back(fmt::format("on {}: {}", rules::split_name(split), fmt::join(claims, "; ")));
  }
  placer.problems().add(fmt::format("{}: the members of packed layout {} disagree {}; {}", group, layout.name,
                                    fmt::join(disagreements, "; "),
                                    packing_hint(layout, members, values, divisors, placer)));
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

PackedGroups::PackedGroups(std::size_t members, const rules::Params& params) : params_(params) {
  // A group has one member or more, usually several: sized for groups of two or more, the table
  // grows (once) for smaller ones.
  std::size_t slots = 16;
  while (slots < members) slots *= 2;
  slots_.assign(slots, 0);
  placed_sources_.reserve(members);
}

const PackedGroups::Divisors* PackedGroups::divisors(const Group& group, Placer& placer) {
  const auto [it, fresh] = divisors_.try_emplace(group.layout);
  if (!fresh) return it->second ? &*it->second : nullptr;
  Divisors resolved;
  std::vector<std::string> zero;
  for (const rules::LayoutMember& member : group.layout->members) {
    std::vector<std::uint64_t>& dims = resolved.emplace_back();
    for (const rules::MemberDim& dim : member.dims) {
      if (dim.divisor_param.empty()) {
        dims.push_back(dim.divisor);
        continue;
      }
      // The rules refuse a divisor naming anything but a parameter the plan has a value for.
      const auto value = params_.find(dim.divisor_param);
      dims.push_back(value == params_.end() ? 0 : value->second);
      if (dims.back() == 0) {
        zero.push_back(fmt::format("member {} {}: {}=0", member.suffix, rules::describe_member_shape(member),
                                   dim.divisor_param));
      }
    }
  }
  if (!zero.empty()) {
    placer.problems().add(
        fmt::format("{}: packed layout {} ({}) cannot be placed: {} (a divisor must be at least "
                    "1; every group of the layout is refused)",
                    group.name, group.layout->name, group.layout->where.str(), fmt::join(zero, "; ")));
    return nullptr;
  }
  it->second = std::move(resolved);
  return &*it->second;
}

std::size_t PackedGroups::find(const rules::Layout* layout, std::string_view name, std::size_t hash) const {
  if (slots_.empty()) return kNoGroup;
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t slot = hash & mask;; slot = (slot + 1) & mask) {
    if (slots_[slot] == 0) return kNoGroup;
    const Group& group = groups_[slots_[slot] - 1];
    if (group.layout == layout && group.name == name) return slots_[slot] - 1;
  }
}

void PackedGroups::index(std::size_t group) {
  constexpr std::size_t kMaxGroups = std::numeric_limits<std::uint32_t>::max() - 1;
  if (group >= kMaxGroups)
    throw Error(ErrorKind::input, fmt::format("more than {} packed groups", kMaxGroups));
  if (2 * (group + 1) > slots_.size()) {
    slots_.assign(std::max<std::size_t>(16, 2 * slots_.size()), 0);
    for (std::size_t g = 0; g < group; ++g) index(g);
  }
  const std::size_t mask = slots_.size() - 1;
  std::size_t slot = hash(groups_[group].layout, groups_[group].name) & mask;
  while (slots_[slot] != 0) slot = (slot + 1) & mask;
  slots_[slot] = static_cast<std::uint32_t>(group + 1);
}

void PackedGroups::add(const rules::Decision& decision, std::size_t hash, bool same_as_last, Target target,
                       Placer& placer) {
  const rules::Layout& layout = *decision.layout;
  const auto member = static_cast<std::size_t>(decision.member - layout.members.data());
  // Members of a group are usually adjacent in name order: try the last group before hashing.
  std::size_t index = last_;
  if (!same_as_last && (index >= groups_.size() || groups_[index].layout != &layout ||
                        groups_[index].name != decision.group)) {
    index = find(&layout, decision.group, hash);
    if (index == kNoGroup) {
      index = groups_.size();
      groups_.push_back(
          Group{&layout, group_name(decision.group, target.source, placer), open_group(layout)});
      this->index(index);
    }
    last_ = index;
  }
  Group& group = groups_[index];
  const auto given_twice = [&](std::size_t first) {
    placer.problems().add(fmt::format("{}: member {} of packed layout {} is given twice, by {} and {}",
                                      group.name, decision.member->suffix, layout.name,
                                      placer.describe(first), placer.describe(target.source)));
    if (group.state == State::open) group.state = State::broken;
  };
  if (group.state == State::placed) return given_twice(placed_sources_[group.at + member]);
  Open& open = open_[group.at];
  std::optional<Target>& slot = open.members[member];
  if (slot) return given_twice(slot->source);
  slot = std::move(target);
  if (group.state == State::open && ++open.present == open.members.size()) {
    place(group, open.members, placer);
    if (placed_sources_.size() + open.members.size() > std::numeric_limits<std::uint32_t>::max())
      throw Error(ErrorKind::input, "more than 2^32 packed members");
    const auto at = static_cast<std::uint32_t>(placed_sources_.size());
    for (const std::optional<Target>& placed : open.members)
      placed_sources_.push_back(static_cast<std::uint32_t>(placed->source));
    free_open_.push_back(group.at);
    group.at = at;
    group.state = State::placed;
  }
}

std::string_view PackedGroups::group_name(std::string_view name, std::size_t source, const Placer& placer) {
  const std::string_view source_name = placer.source(source).name;
  if (source_name.starts_with(name)) return source_name.substr(0, name.size());
  return names_.add(name);
}

std::uint32_t PackedGroups::open_group(const rules::Layout& layout) {
  if (free_open_.empty()) {
    if (open_.size() >= std::numeric_limits<std::uint32_t>::max())
      throw Error(ErrorKind::input, "more than 2^32 open packed groups");
    open_.push_back(Open{std::vector<std::optional<Target>>(layout.members.size()), 0});
    return static_cast<std::uint32_t>(open_.size() - 1);
  }
  const std::uint32_t at = free_open_.back();
  free_open_.pop_back();
  Open& open = open_[at];
  open.members.clear();
  open.members.resize(layout.members.size());
  open.present = 0;
  return at;
}

void PackedGroups::report_incomplete(Placer& placer) const {
  for (const Group& group : groups_) {
    if (group.state != State::open) continue;  // placed, or a member was given twice (reported)
    const Open& open = open_[group.at];
    std::vector<std::string> missing, present;
    for (std::size_t m = 0; m < open.members.size(); ++m) {
      if (!open.members[m]) {
        missing.push_back(group.layout->members[m].suffix);
      } else {
        present.push_back(placer.describe(open.members[m]->source));
      }
    }
    placer.problems().add(fmt::format("{}: incomplete packed group ({}): missing {}; present: {}", group.name,
                                      group.layout->name, fmt::join(missing, ", "),
                                      fmt::join(present, ", ")));
  }
}

void PackedGroups::clear() {
  std::vector<std::uint32_t>().swap(slots_);
  std::deque<Group>().swap(groups_);
  std::vector<std::uint32_t>().swap(placed_sources_);
  std::vector<Open>().swap(open_);
  std::vector<std::uint32_t>().swap(free_open_);
  names_ = plan::NameArena();
  last_ = 0;
}

// Checks a complete group and places its members; their output names are moved into the plan.
void PackedGroups::place(const Group& group, std::vector<std::optional<Target>>& members, Placer& placer) {
  const rules::Layout& layout = *group.layout;
  bool ok = true;
  for (std::size_t m = 0; m < members.size(); ++m) {
    ok = check_member(layout, layout.members[m], *members[m], placer) && ok;
  }
  const Divisors* resolved = ok ? divisors(group, placer) : nullptr;
  if (resolved == nullptr || !derive_logical(layout, members, *resolved, group.name, placer)) return;
  const Target& first = *members.front();
  for (const auto& member : members) {
    if (!same_placement(first, *member)) {
      placer.problems().add(
          fmt::format("{}: members of one packed group are placed differently: {} is {}, {} is {}",
                      group.name, placer.source(first.source).name, placement_text(first),
                      placer.source(member->source).name, placement_text(*member)));
      return;
    }
  }
  const Split split = first.split;
  for (std::size_t m = 0; m < members.size(); ++m) {
    const rules::LayoutMember& decl = layout.members[m];
    Target& target = *members[m];
    const st::DType from = placer.source(target.source).dtype;
    const Cast cast = *cast_between(from, decl.cast_to);
    const st::DType dtype = decl.cast_to.value_or(from);
    if (first.owner) {
      placer.defer_owned(target, dtype, cast);
      continue;
    }
    // The member's dims on the split axis: none (a `[in]` member under an `out` split) replicates it.
    std::array<int, 2> dims{};
    std::size_t on_axis = 0;
    for (std::size_t d = 0; d < decl.dims.size(); ++d) {
      if (split != Split::replicate && decl.dims[d].axis == split) dims[on_axis++] = static_cast<int>(d);
    }
    if (on_axis == 0) {
      placer.add_everywhere(target, dtype, cast);
    } else if (on_axis == 2) {
      placer.problems().add(
          fmt::format("{}: cannot split {}: both dims of member {} of packed layout {} are on it",
                      placer.source(target.source).name, rules::split_name(split), decl.suffix, layout.name));
    } else {
      placer.add_split(target, dims[0], (*resolved)[m][static_cast<std::size_t>(dims[0])], split, dtype,
                       cast);
    }
  }
}

}  // namespace shardwise::plan::detail
