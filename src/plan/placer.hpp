#pragma once
// Internal to the planner: turns "this source goes to these ranks, sliced so" into PlannedTensors,
// and checks the numbers that decide it (owner indices, divisibility). Problems go to the
// Diagnostics; the caller keeps visiting so that one run reports everything.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/plan.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::plan::detail {

class OwnershipScopes;

// rules::Ownership without its strings: 100,000s of owned tensors share a few rules.
struct Owner {
  std::uint64_t index = 0;
  std::size_t scope = 0;  // from OwnershipScopes::add, which knows the count once all tensors are seen
};

// What the rules said about one placed source tensor, kept until it can be placed (packed members
// wait for the rest of their group).
struct Target {
  std::size_t source = 0;  // index into Plan::sources
  Name output;             // output name, as Placer::name() keeps it
  std::size_t rule = 0;    // index into Plan::rule_labels
  rules::Split split = rules::Split::replicate;
  std::optional<Owner> owner;
  // A block-scaled transform whose companion is found once every tensor is placed: an index the
  // planner gives each such rule, copied into PlannedTensor::companion until then (block_pairs.hpp).
  std::uint32_t pending_transform = kNoCompanion;
  // rules `units:`: the split dim's whole units (heads), 0 for none, and the parameter naming them.
  std::uint64_t units = 0;
  std::string units_param{};
  std::uint32_t permutation = kNoPermutation;  // copied into PlannedTensor::permutation
};

// "table[wq] (rules.yaml:12:5)": the label plans show for a rule.
std::string rule_label(const rules::RuleRef& rule);

// The same labels, formatted once per rule into Plan::rule_labels: a checkpoint has 100,000s of
// tensors but few rules, and decisions point at the Rules' own RuleRefs.
class RuleLabels {
 public:
  explicit RuleLabels(std::vector<std::string>& labels) : labels_(labels) {}
  std::size_t operator()(const rules::RuleRef& rule);  // index into `labels`

 private:
  std::vector<std::string>& labels_;
  std::unordered_map<const rules::RuleRef*, std::size_t> index_;
};

// A slice that covers all of `size` is the whole tensor: the converter copies it contiguously.
Slice make_slice(int dim, std::uint64_t begin, std::uint64_t end, std::uint64_t size);

// "3", "0-7", "0,2,5": ranks for messages and the text format.
std::string format_ranks(const std::vector<std::uint64_t>& ranks);

class Placer {
 public:
  // `tensors` bounds how many owned tensors may wait (the list is reserved once, not grown).
  // `scopes` places at once an owned tensor whose count is given (OwnershipScopes::known_count).
  Placer(Plan& plan, Diagnostics& problems, std::uint64_t mp, std::size_t tensors = 0,
         const OwnershipScopes* scopes = nullptr)
      : plan_(plan), problems_(problems), mp_(mp), tensors_(tensors), scopes_(scopes) {}

  std::uint64_t mp() const noexcept { return mp_; }
  Diagnostics& problems() noexcept { return problems_; }
  const Source& source(std::size_t index) const { return plan_.sources[index]; }
  // "blk.0.x.w (part-00002.safetensors)": a source as messages name it.
  std::string describe(std::size_t source) const;

  // An owned tensor goes to rank index / (count / mp) at once when its scope's count is given and
  // can hold it (the plan fails if the scope then fails its check). Otherwise it waits for the
  // count, known once every tensor was seen (and checked): place_owned() then places it, or drops
  // those of a scope that failed its check (the plan fails).
  void defer_owned(Target& target, st::DType dtype, Cast cast);
  void place_owned(const OwnershipScopes& scopes);

  // An output name of `source` as the plan keeps it: the source's own name when the rules kept it,
  // else a copy in the plan's arena, shared by the ranks that hold the tensor. Made on this thread
  // from the decision's string, which the thread that decided frees (no lock between them).
  Name name(std::size_t source, std::string_view output);
  // Adds one output tensor to `rank` (no checks: callers validated the numbers).
  void add(std::uint64_t rank, const Target& target, Name name, st::DType dtype, Shape shape, Slice slice,
           Cast cast, plan::Placement placement = {});
  // The whole tensor to one rank; takes the target's output name.
  void add_owned(std::uint64_t rank, Target& target, st::DType dtype, Cast cast, plan::Placement placement);
  // The same whole tensor on every rank; counts the copies beyond the first as replicated.
  void add_everywhere(Target& target, st::DType dtype, Cast cast);
  // Splits dim `dim` of the source into mp equal ranges; `unit` > 1 is the packing of that dim
  // (`logical` = size * unit is the dim the rules split, known not to overflow). Returns false
  // after reporting why the split is impossible.
  bool add_split(Target& target, int dim, std::uint64_t unit, rules::Split axis, st::DType dtype, Cast cast);
  // Splits dim `dim` into target.units whole units: units / mp per rank when there are at least mp
  // (which mp must divide), else each unit on mp / units consecutive ranks (units must divide mp).
  // Returns false after reporting why it is impossible.
  bool add_split_units(Target& target, int dim, rules::Split axis, st::DType dtype, Cast cast);

 private:
  // What add_owned() reads of an owned Target (100,000s wait at once): not its split or units.
  struct Deferred {
    Name output;
    std::size_t source = 0;
    std::size_t rule = 0;
    Owner owner;
    std::uint32_t pending_transform = kNoCompanion;
    std::uint32_t permutation = kNoPermutation;
    st::DType dtype;
    Cast cast = Cast::none;
  };

  Plan& plan_;
  Diagnostics& problems_;
  std::uint64_t mp_;
  std::size_t tensors_;
  const OwnershipScopes* scopes_;
  std::vector<Deferred> owned_;
};

}  // namespace shardwise::plan::detail
