// `shardwise diff`: two JSON plans read into records (plan_reader), then compared source tensor by
// source tensor. Records are compared as canonical text, whatever keys they hold; only the tensors
// that differ are parsed again to say what differs.

#include <shardwise/plan/plan_diff.hpp>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <map>
#include <optional>
#include <span>
#include <thread>
#include <type_traits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/decimal.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/core/parallel.hpp>

#include "plan/placer.hpp"
#include "plan/plan_reader.hpp"
#include "plan/text_store.hpp"

namespace shardwise::plan {
namespace {

using detail::PlacementRecord;
using detail::PlanRecords;
using detail::SkipRecord;
using nlohmann::json;

// A value as the rows show it: strings bare, a slice as dim1[0:512], null as "whole" for a slice
// and "none" otherwise, anything else as compact JSON. For records whose text has an escape.
std::string display(const std::string& path, const json& value) {
  if (value.is_null()) return path == "slice" ? "whole" : "none";
  if (value.is_string()) return value.get<std::string>();
  if (path == "slice" && value.is_object() && value.size() == 3 && value.contains("dim") &&
      value.contains("begin") && value.contains("end")) {
    return fmt::format("dim{}[{}:{}]", value["dim"].dump(), value["begin"].dump(), value["end"].dump());
  }
  if (path == "cast" && value.is_object() && value.size() == 2 && value.contains("from") &&
      value.contains("to") && value["from"].is_string() && value["to"].is_string()) {
    return value["from"].get<std::string>() + "->" + value["to"].get<std::string>();
  }
  if (value.is_array() &&
      std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_number(); })) {
    std::vector<std::string> items;
    for (const json& v : value) items.push_back(v.dump());
    return fmt::format("[{}]", fmt::join(items, ", "));  // a shape as the plans show it
  }
  return value.dump();
}

// Records are compact JSON as nlohmann's dump() writes it (plan_reader.hpp). One without a
// backslash is read here in place, without a parse: its strings are their bytes, and the text of
// any value in it is that value's dump().
namespace compact {

// Where the value starting at `pos` ends.
std::size_t value_end(std::string_view text, std::size_t pos) {
  int depth = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      i = text.find('"', i + 1);
      if (i == std::string_view::npos) return text.size();
      if (depth == 0) return i + 1;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return i;
      if (--depth == 0) return i + 1;
    } else if (c == ',' && depth == 0) {
      return i;
    }
  }
  return text.size();
}

// f(key, value) for each member of `object` ("{...}"), in the text's (sorted) order.
template <typename F>
void for_each_member(std::string_view object, const F& f) {
  std::size_t pos = 1;
  while (pos < object.size() && object[pos] == '"') {
    const std::size_t key_end = object.find('"', pos + 1);
    if (key_end == std::string_view::npos) return;
    const std::size_t begin = key_end + 2;  // past `":`
    const std::size_t end = value_end(object, begin);
    f(object.substr(pos + 1, key_end - pos - 1), object.substr(begin, end - begin));
    pos = end + 1;
  }
}

// f(value) for each element of `array` ("[...]").
template <typename F>
void for_each_element(std::string_view array, const F& f) {
  for (std::size_t pos = 1; pos < array.size() && array[pos] != ']';) {
    const std::size_t end = value_end(array, pos);
    f(array.substr(pos, end - pos));
    pos = end + 1;
  }
}

bool is_number(std::string_view value) {
  return !value.empty() && (value.front() == '-' || (value.front() >= '0' && value.front() <= '9'));
}

// What nlohmann reads as an unsigned integer: digits only (a float's dump has '.' or 'e').
bool is_unsigned(std::string_view value) {
  return !value.empty() &&
         std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string_view unquoted(std::string_view value) { return value.substr(1, value.size() - 2); }

// An object's members when it has exactly `keys` (sorted), else false.
template <std::size_t N>
bool exact_members(std::string_view object, const std::array<std::string_view, N>& keys,
                   std::array<std::string_view, N>& values) {
  std::size_t count = 0;
  bool match = object.front() == '{';
  if (match) {
    for_each_member(object, [&](std::string_view key, std::string_view value) {
      if (count < N && key == keys[count])
        values[count] = value;
      else
        match = false;
      ++count;
    });
  }
  return match && count == N;
}

// display() of a value's dump; text it has to make is kept in `scratch`.
template <typename Scratch>
std::string_view display(std::string_view path, std::string_view value, Scratch& scratch) {
  if (value == "null") return path == "slice" ? "whole" : "none";
  if (value.front() == '"') return unquoted(value);
  if (path == "slice") {
    std::array<std::string_view, 3> v;  // begin, dim, end
    if (exact_members(value, std::array<std::string_view, 3>{"begin", "dim", "end"}, v))
      return scratch.concat({"dim", v[1], "[", v[0], ":", v[2], "]"});
  }
  if (path == "cast") {
    std::array<std::string_view, 2> v;  // from, to
    if (exact_members(value, std::array<std::string_view, 2>{"from", "to"}, v) && v[0].front() == '"' &&
        v[1].front() == '"') {
      return scratch.concat({unquoted(v[0]), "->", unquoted(v[1])});
    }
  }
  if (value.front() == '[') {
    bool numbers = true;
    for_each_element(value, [&](std::string_view item) { numbers = numbers && is_number(item); });
    // A shape as the plans show it: ", " between the numbers (no number has a comma).
    if (numbers) return value.find(',') == std::string_view::npos ? value : scratch.spaced(value);
  }
  return value;
}

}  // namespace compact

// The field names rows use: the keys of a tensor's JSON object, the source's prefixed with
// "source."; the two everyone looks for first get short names.
bool is_field(std::string_view name, std::string_view key, bool in_source) {
  if (!in_source) return name == (key == "name" ? std::string_view("output") : key);
  if (key == "slice") return name == "slice";
  return name.size() == 7 + key.size() && name.starts_with("source.") && name.substr(7) == key;
}

// Text made for the row being made (field names, values, joined lists): dropped at the next row.
class Scratch {
 public:
  std::string_view add(std::string_view text) { return store_.add(text); }
  std::string_view concat(std::initializer_list<std::string_view> parts) {
    buffer_.clear();
    for (const std::string_view part : parts) buffer_ += part;
    return store_.add(buffer_);
  }
  std::string_view join(std::span<const std::string_view> parts, std::string_view separator) {
    buffer_.clear();
    for (std::size_t i = 0; i < parts.size(); ++i) {
      if (i > 0) buffer_ += separator;
      buffer_ += parts[i];
    }
    return store_.add(buffer_);
  }
  // `list` with ", " for each ','.
  std::string_view spaced(std::string_view list) {
    buffer_.clear();
    for (const char c : list) {
      buffer_ += c;
      if (c == ',') buffer_ += ' ';
    }
    return store_.add(buffer_);
  }
  void clear() noexcept { store_.clear(); }

 private:
  detail::TextStore store_;
  std::string buffer_;  // reused across calls to save on allocation
};

// One source tensor's placements in one plan, as fields: a field's value on each of its ranks.
// Reused from one tensor to the next to save on allocation.
struct Placements {
  std::vector<std::uint64_t> ranks;
  std::vector<std::string_view> names;   // the fields, in the order first seen
  std::vector<std::string_view> values;  // field f's value on the i-th rank: values[f * ranks.size() + i]
  std::vector<std::uint32_t> order;      // the fields by name
  std::vector<std::string_view> slices;  // each source's "slice" as compact JSON, for even_split_text

  std::optional<std::size_t> find(std::string_view name) const {
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) return std::nullopt;
    return static_cast<std::size_t>(it - names.begin());
  }
};

void describe(std::span<const PlacementRecord> records, Placements& out, Scratch& scratch) {
  const std::size_t n = records.size();
  out.ranks.clear();
  out.names.clear();
  out.values.clear();
  out.slices.clear();
  for (std::size_t i = 0; i < n; ++i) {
    out.ranks.push_back(records[i].rank);
    const std::string_view text = records[i].fields;
    std::size_t next = 0;  // every rank's record has the same keys, mostly: where the next one is
    const auto field_for = [&](std::string_view key, bool in_source) {
      std::size_t f = next;
      if (f >= out.names.size() || !is_field(out.names[f], key, in_source)) {
        f = 0;
        while (f < out.names.size() && !is_field(out.names[f], key, in_source)) ++f;
      }
      if (f == out.names.size()) {
        const std::string_view name = !in_source       ? (key == "name" ? "output" : scratch.add(key))
                                      : key == "slice" ? "slice"
                                                       : scratch.concat({"source.", key});
        out.names.push_back(name);
        for (std::size_t k = 0; k < n; ++k) out.values.push_back("absent");  // inlined, unlike resize
      }
      next = f + 1;
      return f;
    };
    const auto add = [&](std::string_view key, bool in_source, const auto& value) {
      const std::size_t f = field_for(key, in_source);
      if constexpr (std::is_same_v<std::decay_t<decltype(value)>, json>) {
        out.values[f * n + i] = scratch.add(display(std::string(out.names[f]), value));
      } else {
        out.values[f * n + i] = compact::display(out.names[f], value, scratch);
      }
    };
    if (text.find('\\') == std::string_view::npos) {
      compact::for_each_member(text, [&](std::string_view key, std::string_view value) {
        if (key == "source" && value.front() == '{') {
          std::string_view slice = "null";
          compact::for_each_member(value, [&](std::string_view source_key, std::string_view source_value) {
            add(source_key, true, source_value);
            if (source_key == "slice") slice = source_value;
          });
          out.slices.push_back(slice);
        } else {
          add(key, false, value);
        }
      });
      continue;
    }
    const json entry = json::parse(text);
    for (const auto& [key, value] : entry.items()) {
      if (key == "source" && value.is_object()) {
        for (const auto& [source_key, source_value] : value.items()) add(source_key, true, source_value);
        out.slices.push_back(value.contains("slice") ? scratch.add(value["slice"].dump()) : "null");
      } else {
        add(key, false, value);
      }
    }
  }
  out.order.resize(out.names.size());
  for (std::uint32_t f = 0; f < out.order.size(); ++f) out.order[f] = f;
  std::sort(out.order.begin(), out.order.end(),
            [&](std::uint32_t x, std::uint32_t y) { return out.names[x] < out.names[y]; });
}

std::string_view ranks_text(const std::vector<std::uint64_t>& ranks, std::uint64_t mp, Scratch& scratch) {
  bool every = ranks.size() == mp && mp > 1;
  for (std::size_t i = 0; every && i < ranks.size(); ++i) every = ranks[i] == i;
  return every ? "all" : scratch.add(detail::format_ranks(ranks));
}

// "dim1 8x512" when the slices cut dim 1 in equal consecutive pieces, rank i taking the i-th (as
// the text plan says it); "" otherwise.
std::string_view even_split_text(const Placements& p, Scratch& scratch) {
  if (p.slices.size() != p.ranks.size() || p.ranks.size() < 2) return "";
  std::uint64_t size = 0;
  std::array<std::string_view, 3> first;  // begin, dim, end of rank 0's slice
  for (std::size_t i = 0; i < p.slices.size(); ++i) {
    std::array<std::string_view, 3> s;
    if (p.ranks[i] != i || p.slices[i].front() != '{' || p.slices[i].find('\\') != std::string::npos ||
        !compact::exact_members(p.slices[i], std::array<std::string_view, 3>{"begin", "dim", "end"}, s) ||
        !std::all_of(s.begin(), s.end(), compact::is_unsigned)) {
      return "";
    }
    if (i == 0) first = s;
    if (s[1] != first[1]) return "";
    const std::optional<std::uint64_t> begin = parse_decimal(s[0]), end = parse_decimal(s[2]);
    if (!begin || !end || *end < *begin) return "";
    if (i == 0) size = *end - *begin;
    if (*end - *begin != size || *begin != i * size) return "";
  }
  return scratch.concat(
      {"dim", first[1], " ", fmt::format_int(p.slices.size()).str(), "x", fmt::format_int(size).str()});
}

// One value when every rank has the same, else each rank's in rank order.
std::string_view values_text(const Placements& p, std::size_t field, Scratch& scratch) {
  const std::size_t n = p.ranks.size();
  const std::span<const std::string_view> values(p.values.data() + field * n, n);
  if (std::all_of(values.begin(), values.end(), [&](std::string_view v) { return v == values.front(); })) {
    return values.front();
  }
  return scratch.join(values, " ");
}

std::string_view field_text(const Placements& p, std::size_t field, Scratch& scratch) {
  if (p.names[field] == "slice") {
    if (const std::string_view even = even_split_text(p, scratch); !even.empty()) return even;
  }
  return values_text(p, field, scratch);
}

bool same_records(std::span<const PlacementRecord> a, std::span<const PlacementRecord> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const PlacementRecord& x, const PlacementRecord& y) {
                      return x.rank == y.rank && x.fields == y.fields;
                    });
}

}  // namespace

namespace detail {

// One plan's records by source id.
struct DiffSide {
  const PlanRecords& plan;
  // By source id: its placements are [begin[id], end[id]) (grouped by source, groups in any order).
  HugeVector<std::size_t> begin, end;
  HugeVector<const SkipRecord*> skip;  // by source id

  DiffSide(const PlanRecords& records, std::size_t names)
      : plan(records), begin(names, 0), end(names, 0), skip(names, nullptr) {
    const auto& placements = records.placements;
    for (std::size_t i = 0; i < placements.size(); ++i) {
      const std::uint32_t id = placements[i].source;
      if (i == 0 || placements[i - 1].source != id) begin[id] = i;
      end[id] = i + 1;
    }
    for (const SkipRecord& s : records.skipped) skip[s.source] = &s;
  }
  std::span<const PlacementRecord> placements(std::uint32_t id) const {
    return {plan.placements.data() + begin[id], plan.placements.data() + end[id]};
  }
  bool has(std::uint32_t id) const { return begin[id] != end[id] || skip[id] != nullptr; }
};

// Both plans' records, and which source tensors differ: what PlanDiff makes its rows from.
struct ComparedPlans {
  NameTable names;
  PlanRecords old_plan, new_plan;
  std::optional<DiffSide> old_side, new_side;
  HugeVector<std::uint32_t> ids;  // the source ids in name order
  // By position in `ids`: kSame, or 1 + the TensorChangeKind.
  HugeVector<std::uint8_t> kinds;
  static constexpr std::uint8_t kSame = 0;
};

}  // namespace detail

namespace {

using detail::ComparedPlans;
using detail::DiffSide;

std::uint8_t kind_code(TensorChangeKind kind) {
  return static_cast<std::uint8_t>(1 + static_cast<int>(kind));
}

// Makes the rows of the tensors that differ, one at a time, in memory reused from row to row.
class RowMaker {
 public:
  explicit RowMaker(const ComparedPlans& plans) : plans_(plans) {}

  TensorChangeView make(std::uint32_t id, TensorChangeKind kind) {
    scratch_.clear();
    fields_.clear();
    switch (kind) {
      case TensorChangeKind::placement:
        placement_changes(id);
        break;
      case TensorChangeKind::only_old:
        where_placed(*plans_.old_side, id, true);
        break;
      case TensorChangeKind::only_new:
        where_placed(*plans_.new_side, id, false);
        break;
    }
    return {plans_.names.name(id), kind, fields_};
  }

 private:
  void change(std::string_view field, std::string_view old_value, std::string_view new_value) {
    fields_.push_back({field, old_value, new_value});
  }

  // Where one plan puts a tensor, for the tensors only one plan has.
  void where_placed(const DiffSide& side, std::uint32_t id, bool old_side) {
    const auto put = [&](std::string_view field, std::string_view value) {
      if (old_side)
        change(field, value, "");
      else
        change(field, "", value);
    };
    if (side.skip[id] != nullptr) return put("placement", "skipped");
    describe(side.placements(id), old_, scratch_);
    put("ranks", ranks_text(old_.ranks, side.plan.model_parallel, scratch_));
    for (const char* key : {"output", "slice"}) {
      if (const std::optional<std::size_t> field = old_.find(key))
        put(key, field_text(old_, *field, scratch_));
    }
  }

  void placement_changes(std::uint32_t id) {
    const DiffSide& a = *plans_.old_side;
    const DiffSide& b = *plans_.new_side;
    if (a.skip[id] != nullptr || b.skip[id] != nullptr) {
      const auto state = [&](const DiffSide& side) {
        if (side.skip[id] != nullptr) return std::string_view("skipped");
        describe(side.placements(id), old_, scratch_);
        return scratch_.concat({"placed on ", ranks_text(old_.ranks, side.plan.model_parallel, scratch_)});
      };
      if (a.skip[id] != nullptr && b.skip[id] != nullptr)
        return change("skip", a.skip[id]->fields, b.skip[id]->fields);
      return change("placement", state(a), state(b));
    }
    describe(a.placements(id), old_, scratch_);
    describe(b.placements(id), new_, scratch_);
    const std::string_view old_ranks = ranks_text(old_.ranks, a.plan.model_parallel, scratch_);
    const std::string_view new_ranks = ranks_text(new_.ranks, b.plan.model_parallel, scratch_);
    if (old_.ranks != new_.ranks) change("ranks", old_ranks, new_ranks);
    // Both lists are sorted by name: walked side by side, a field one side lacks is "".
    const std::vector<std::uint32_t>&old_order = old_.order, &new_order = new_.order;
    for (std::size_t i = 0, j = 0; i < old_order.size() || j < new_order.size();) {
      const int order = i == old_order.size()   ? 1
                        : j == new_order.size() ? -1
                                                : old_.names[old_order[i]].compare(new_.names[new_order[j]]);
      std::string_view old_value, new_value;
      const std::string_view name = order <= 0 ? old_.names[old_order[i]] : new_.names[new_order[j]];
      if (order <= 0) old_value = field_text(old_, old_order[i++], scratch_);
      if (order >= 0) new_value = field_text(new_, new_order[j++], scratch_);
      if (old_value != new_value)
        change(name, old_value.empty() ? "absent" : old_value, new_value.empty() ? "absent" : new_value);
    }
    // Same values, differently spread over the ranks: list each rank's record.
    if (fields_.empty()) {
      const auto all = [&](std::span<const PlacementRecord> records) {
        std::string& parts = parts_;
        parts.clear();
        for (const PlacementRecord& r : records) {
          if (!parts.empty()) parts += "; ";
          fmt::format_to(std::back_inserter(parts), "{}: {}", r.rank, r.fields);
        }
        return scratch_.add(parts);
      };
      change("placements", all(a.placements(id)), all(b.placements(id)));
    }
  }

  const ComparedPlans& plans_;
  Scratch scratch_;
  Placements old_, new_;
  std::vector<FieldChangeView> fields_;
  std::string parts_;
};

std::string head_text(const json& head, const char* key) {
  const auto it = head.find(key);
  if (it == head.end()) return "absent";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// The plan-level context (shown) and changes (counted): rank files, side files, mp.
void compare_heads(const PlanRecords& a, const PlanRecords& b, PlanDiff& diff) {
  for (const char* key : {"filter", "filter_rank", "filter_rule"}) {
    const std::string old_value = head_text(a.head, key), new_value = head_text(b.head, key);
    const auto unset = [](const std::string& v) { return v == "null" || v == "absent"; };
    if (old_value != new_value && !(unset(old_value) && unset(new_value))) {
      throw Error(
          ErrorKind::usage,
          fmt::format("the plans were narrowed differently ({}: {} in {}, {} in {}): make both with the same "
                      "--filter, --rank and --rule, or with none",
                      key, old_value, diff.old_name, new_value, diff.new_name));
    }
  }
  for (const char* key : {"rules", "params", "input"}) {
    std::string old_value = head_text(a.head, key), new_value = head_text(b.head, key);
    if (old_value != new_value) diff.context.push_back({key, std::move(old_value), std::move(new_value)});
  }
  if (a.model_parallel != b.model_parallel) {
    diff.plan_changes.push_back(
        {"model_parallel", fmt::format("{}", a.model_parallel), fmt::format("{}", b.model_parallel)});
  }
  const auto files = [](const PlanRecords& plan) {
    std::map<std::uint64_t, std::string> by_rank;
    for (const json& output : plan.head["outputs"])
      by_rank[output["rank"].get<std::uint64_t>()] = output["file"].get<std::string>();
    return by_rank;
  };
  const auto old_files = files(a), new_files = files(b);
  for (std::uint64_t rank = 0; rank < std::max(a.model_parallel, b.model_parallel); ++rank) {
    const auto o = old_files.find(rank), n = new_files.find(rank);
    const std::string old_file = o == old_files.end() ? "absent" : o->second;
    const std::string new_file = n == new_files.end() ? "absent" : n->second;
    if (old_file != new_file)
      diff.plan_changes.push_back({fmt::format("rank {} file", rank), old_file, new_file});
  }
  const std::string old_side = head_text(a.head, "side_files"), new_side = head_text(b.head, "side_files");
  if (old_side != new_side) diff.plan_changes.push_back({"side_files", old_side, new_side});
}

// The names' ids in name order. Ids are numbered as the plans list their tensors, rank by rank and
// each rank's in name order: merging those runs takes a few comparisons per name, a sort ~18.
detail::HugeVector<std::uint32_t> by_name(const detail::NameTable& names) {
  detail::HugeVector<std::uint32_t> ids(names.size());
  for (std::uint32_t id = 0; id < ids.size(); ++id) ids[id] = id;
  const auto before = [&](std::uint32_t x, std::uint32_t y) { return names.name(x) < names.name(y); };
  std::vector<std::size_t> runs = {0};  // where each ascending run begins, then the end
  for (std::size_t i = 1; i < ids.size(); ++i) {
    if (before(ids[i], ids[i - 1])) runs.push_back(i);
  }
  runs.push_back(ids.size());
  while (runs.size() > 2) {
    std::vector<std::size_t> merged;
    std::size_t i = 0;
    for (; i + 2 < runs.size(); i += 2) {
      std::inplace_merge(ids.begin() + static_cast<std::ptrdiff_t>(runs[i]),
                         ids.begin() + static_cast<std::ptrdiff_t>(runs[i + 1]),
                         ids.begin() + static_cast<std::ptrdiff_t>(runs[i + 2]), before);
      merged.push_back(runs[i]);
    }
    for (; i < runs.size(); ++i) merged.push_back(runs[i]);
    runs = std::move(merged);
  }
  return ids;
}

// Which source tensors differ and how, counted in `diff`; their rows are made when visited.
PlanDiff compare(std::shared_ptr<ComparedPlans> plans, std::string_view old_name, std::string_view new_name) {
  PlanDiff diff;
  diff.old_name = old_name;
  diff.new_name = new_name;
  compare_heads(plans->old_plan, plans->new_plan, diff);

  const std::size_t count = plans->names.size();
  const DiffSide& old_side = plans->old_side.emplace(plans->old_plan, count);
  const DiffSide& new_side = plans->new_side.emplace(plans->new_plan, count);
  plans->ids = by_name(plans->names);
  plans->kinds.assign(count, ComparedPlans::kSame);
  for (std::size_t at = 0; at < count; ++at) {
    const std::uint32_t id = plans->ids[at];
    const bool in_old = old_side.has(id), in_new = new_side.has(id);
    diff.old_tensors += in_old;
    diff.new_tensors += in_new;
    TensorChangeKind kind = TensorChangeKind::placement;
    if (!in_new) {
      kind = TensorChangeKind::only_old;
    } else if (!in_old) {
      kind = TensorChangeKind::only_new;
    } else {
      const SkipRecord* old_skip = old_side.skip[id];
      const SkipRecord* new_skip = new_side.skip[id];
      const bool same = (old_skip == nullptr) == (new_skip == nullptr) &&
                        (old_skip == nullptr || old_skip->fields == new_skip->fields) &&
                        same_records(old_side.placements(id), new_side.placements(id));
      if (same) {
        ++diff.same;
        continue;
      }
    }
    plans->kinds[at] = kind_code(kind);
    ++(kind == TensorChangeKind::placement  ? diff.placed_differently
       : kind == TensorChangeKind::only_old ? diff.only_old
                                            : diff.only_new);
  }
  diff.plans = std::move(plans);
  return diff;
}

}  // namespace

std::uint64_t PlanDiff::count(TensorChangeKind kind) const noexcept {
  switch (kind) {
    case TensorChangeKind::placement:
      return placed_differently;
    case TensorChangeKind::only_old:
      return only_old;
    case TensorChangeKind::only_new:
      return only_new;
  }
  return 0;
}

void PlanDiff::for_each_name(std::optional<TensorChangeKind> kind,
                             const std::function<void(std::string_view)>& visit) const {
  if (!plans) return;
  const std::uint8_t wanted = kind ? kind_code(*kind) : ComparedPlans::kSame;
  for (std::size_t at = 0; at < plans->ids.size(); ++at) {
    const std::uint8_t code = plans->kinds[at];
    if (code != ComparedPlans::kSame && (!kind || code == wanted)) visit(plans->names.name(plans->ids[at]));
  }
}

void PlanDiff::for_each_tensor(std::optional<TensorChangeKind> kind,
                               const std::function<void(const TensorChangeView&)>& visit) const {
  if (!plans) return;
  RowMaker rows(*plans);
  const std::uint8_t wanted = kind ? kind_code(*kind) : ComparedPlans::kSame;
  for (std::size_t at = 0; at < plans->ids.size(); ++at) {
    const std::uint8_t code = plans->kinds[at];
    if (code == ComparedPlans::kSame || (kind && code != wanted)) continue;
    visit(rows.make(plans->ids[at], static_cast<TensorChangeKind>(code - 1)));
  }
}

std::vector<TensorChange> PlanDiff::tensors() const {
  std::vector<TensorChange> out;
  for_each_tensor(std::nullopt, [&](const TensorChangeView& t) {
    TensorChange& change = out.emplace_back(TensorChange{std::string(t.name), t.kind, {}});
    for (const FieldChangeView& f : t.fields)
      change.fields.push_back({std::string(f.field), std::string(f.old_value), std::string(f.new_value)});
  });
  return out;
}

PlanDiff diff_plans(std::string_view old_text, std::string_view old_name, std::string_view new_text,
                    std::string_view new_name) {
  auto plans = std::make_shared<ComparedPlans>();
  plans->old_plan = detail::read_plan_records(old_text, old_name, plans->names);
  plans->new_plan = detail::read_plan_records(new_text, new_name, plans->names);
  return compare(std::move(plans), old_name, new_name);
}

PlanDiff diff_plan_files(const std::string& old_path, const std::string& new_path) {
  auto plans = std::make_shared<ComparedPlans>();
  if (std::thread::hardware_concurrency() < 2) {
    plans->old_plan = detail::read_plan_file(old_path, plans->names);
    plans->new_plan = detail::read_plan_file(new_path, plans->names);
    return compare(std::move(plans), old_path, new_path);
  }
  // Read side by side, the new plan with names of its own, then numbered as the old plan's. The
  // errors as when read one after the other: the old plan's first.
  detail::NameTable new_names;
  run_beside([&] { plans->old_plan = detail::read_plan_file(old_path, plans->names); },
             [&] { plans->new_plan = detail::read_plan_file(new_path, new_names); });
  detail::renumber(plans->new_plan, new_names, plans->names);
  return compare(std::move(plans), old_path, new_path);
}

}  // namespace shardwise::plan
