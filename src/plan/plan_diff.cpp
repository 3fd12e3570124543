// `shardwise diff`: two JSON plans read into records (plan_reader), then compared source tensor by
// source tensor. Records are compared as canonical text, whatever keys they hold; only the tensors
// that differ are parsed again to say what differs.

#include <shardwise/plan/plan_diff.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <span>
#include <type_traits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/decimal.hpp>
#include <shardwise/core/error.hpp>

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

// display() of a value's dump.
std::string display(std::string_view path, std::string_view value) {
  if (value == "null") return path == "slice" ? "whole" : "none";
  if (value.front() == '"') return std::string(unquoted(value));
  if (path == "slice") {
    std::array<std::string_view, 3> v;  // begin, dim, end
    if (exact_members(value, std::array<std::string_view, 3>{"begin", "dim", "end"}, v))
      return fmt::format("dim{}[{}:{}]", v[1], v[0], v[2]);
  }
  if (path == "cast") {
    std::array<std::string_view, 2> v;  // from, to
    if (exact_members(value, std::array<std::string_view, 2>{"from", "to"}, v) && v[0].front() == '"' &&
        v[1].front() == '"') {
      return fmt::format("{}->{}", unquoted(v[0]), unquoted(v[1]));
    }
  }
  if (value.front() == '[') {
    bool numbers = true;
    std::string shape = "[";
    for_each_element(value, [&](std::string_view item) {
      numbers = numbers && is_number(item);
      if (shape.size() > 1) shape += ", ";
      shape += item;
    });
    if (numbers) return shape + "]";  // a shape as the plans show it
  }
  return std::string(value);
}

}  // namespace compact

// The field names rows use: the keys of a tensor's JSON object, the source's prefixed with
// "source."; the two everyone looks for first get short names. Written into `name`.
void field_name(std::string& name, std::string_view key, bool in_source) {
  name.clear();
  if (!in_source) {
    name += key == "name" ? "output" : key;
  } else if (key == "slice") {
    name += "slice";
  } else {
    name += "source.";
    name += key;
  }
}

// One field of a source tensor's placements: its value on each of the tensor's ranks.
struct Field {
  std::string name;
  std::vector<std::string> values;
};

// One source tensor's placements in one plan, as fields.
struct Placements {
  std::vector<std::uint64_t> ranks;
  std::vector<Field> fields;        // sorted by name
  std::vector<std::string> slices;  // each source's "slice" as compact JSON, for even_split_text

  const Field* find(std::string_view name) const {
    const auto it =
        std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.name == name; });
    return it == fields.end() ? nullptr : &*it;
  }
};

Placements describe(std::span<const PlacementRecord> records) {
  Placements out;
  std::string name;  // reused across fields to save on allocation
  for (std::size_t i = 0; i < records.size(); ++i) {
    out.ranks.push_back(records[i].rank);
    const std::string_view text = records[i].fields;
    const auto add = [&](std::string_view key, bool in_source, const auto& value) {
      field_name(name, key, in_source);
      auto field =
          std::find_if(out.fields.begin(), out.fields.end(), [&](const Field& f) { return f.name == name; });
      if (field == out.fields.end()) {
        field = out.fields.insert(field, Field{name, std::vector<std::string>(records.size(), "absent")});
      }
      if constexpr (std::is_same_v<std::decay_t<decltype(value)>, json>) {
        field->values[i] = display(name, value);
      } else {
        field->values[i] = compact::display(name, value);
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
          out.slices.emplace_back(slice);
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
        out.slices.push_back(value.contains("slice") ? value["slice"].dump() : "null");
      } else {
        add(key, false, value);
      }
    }
  }
  std::sort(out.fields.begin(), out.fields.end(),
            [](const Field& x, const Field& y) { return x.name < y.name; });
  return out;
}

std::string ranks_text(const std::vector<std::uint64_t>& ranks, std::uint64_t mp) {
  bool every = ranks.size() == mp && mp > 1;
  for (std::size_t i = 0; every && i < ranks.size(); ++i) every = ranks[i] == i;
  return every ? "all" : detail::format_ranks(ranks);
}

// "dim1 8x512" when the slices cut dim 1 in equal consecutive pieces, rank i taking the i-th (as
// the text plan says it); "" otherwise.
std::string even_split_text(const Placements& p) {
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
  return fmt::format("dim{} {}x{}", first[1], p.slices.size(), size);
}

// One value when every rank has the same, else each rank's in rank order.
std::string values_text(const std::vector<std::string>& values) {
  if (std::all_of(values.begin(), values.end(), [&](const std::string& v) { return v == values.front(); })) {
    return values.front();
  }
  return fmt::format("{}", fmt::join(values, " "));
}

std::string field_text(const Placements& p, const Field& field) {
  if (field.name == "slice") {
    if (std::string even = even_split_text(p); !even.empty()) return even;
  }
  return values_text(field.values);
}

struct Side {
  const PlanRecords& plan;
  detail::HugeVector<std::size_t> begin;       // by source id: its placements are [begin[id], begin[id + 1])
  detail::HugeVector<const SkipRecord*> skip;  // by source id

  Side(const PlanRecords& records, std::size_t names)
      : plan(records), begin(names + 1, 0), skip(names, nullptr) {
    for (const PlacementRecord& p : records.placements) ++begin[p.source + 1];
    for (std::size_t i = 1; i < begin.size(); ++i) begin[i] += begin[i - 1];
    for (const SkipRecord& s : records.skipped) skip[s.source] = &s;
  }
  std::span<const PlacementRecord> placements(std::uint32_t id) const {
    return {plan.placements.data() + begin[id], plan.placements.data() + begin[id + 1]};
  }
  bool has(std::uint32_t id) const { return begin[id] != begin[id + 1] || skip[id] != nullptr; }
};

bool same_records(std::span<const PlacementRecord> a, std::span<const PlacementRecord> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const PlacementRecord& x, const PlacementRecord& y) {
                      return x.rank == y.rank && x.fields == y.fields;
                    });
}

// Where one plan puts a tensor, for the tensors only one plan has.
std::vector<FieldChange> where_placed(const Side& side, std::uint32_t id, bool old_side) {
  const auto put = [&](std::string field, std::string value) {
    return old_side ? FieldChange{std::move(field), std::move(value), ""}
                    : FieldChange{std::move(field), "", std::move(value)};
  };
  if (side.skip[id] != nullptr) return {put("placement", "skipped")};
  const Placements p = describe(side.placements(id));
  std::vector<FieldChange> fields = {put("ranks", ranks_text(p.ranks, side.plan.model_parallel))};
  for (const char* key : {"output", "slice"}) {
    if (const Field* field = p.find(key)) fields.push_back(put(key, field_text(p, *field)));
  }
  return fields;
}

std::vector<FieldChange> placement_changes(const Side& a, const Side& b, std::uint32_t id) {
  if (a.skip[id] != nullptr || b.skip[id] != nullptr) {
    const auto state = [&](const Side& side) {
      if (side.skip[id] == nullptr)
        return fmt::format("placed on {}",
                           ranks_text(describe(side.placements(id)).ranks, side.plan.model_parallel));
      return std::string("skipped");
    };
    if (a.skip[id] != nullptr && b.skip[id] != nullptr)
      return {{"skip", std::string(a.skip[id]->fields), std::string(b.skip[id]->fields)}};
    return {{"placement", state(a), state(b)}};
  }
  const Placements old_p = describe(a.placements(id));
  const Placements new_p = describe(b.placements(id));
  std::vector<FieldChange> changes;
  const std::string old_ranks = ranks_text(old_p.ranks, a.plan.model_parallel);
  const std::string new_ranks = ranks_text(new_p.ranks, b.plan.model_parallel);
  if (old_p.ranks != new_p.ranks) changes.push_back({"ranks", old_ranks, new_ranks});
  // Both lists are sorted by name: walked side by side, a field one side lacks is "".
  for (std::size_t i = 0, j = 0; i < old_p.fields.size() || j < new_p.fields.size();) {
    const int order = i == old_p.fields.size()   ? 1
                      : j == new_p.fields.size() ? -1
                                                 : old_p.fields[i].name.compare(new_p.fields[j].name);
    std::string old_value, new_value;
    const std::string& name = order <= 0 ? old_p.fields[i].name : new_p.fields[j].name;
    if (order <= 0) old_value = field_text(old_p, old_p.fields[i++]);
    if (order >= 0) new_value = field_text(new_p, new_p.fields[j++]);
    if (old_value != new_value) {
      changes.push_back(
          {name, old_value.empty() ? "absent" : old_value, new_value.empty() ? "absent" : new_value});
    }
  }
  // Same values, differently spread over the ranks: list each rank's record.
  if (changes.empty()) {
    const auto all = [](std::span<const PlacementRecord> records) {
      std::vector<std::string> parts;
      for (const PlacementRecord& r : records) parts.push_back(fmt::format("{}: {}", r.rank, r.fields));
      return fmt::format("{}", fmt::join(parts, "; "));
    };
    changes.push_back({"placements", all(a.placements(id)), all(b.placements(id))});
  }
  return changes;
}

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

PlanDiff compare_records(const PlanRecords& a, const PlanRecords& b, const detail::NameTable& names,
                         std::string_view old_name, std::string_view new_name) {
  PlanDiff diff;
  diff.old_name = old_name;
  diff.new_name = new_name;
  compare_heads(a, b, diff);

  const Side old_side(a, names.size()), new_side(b, names.size());
  const detail::HugeVector<std::uint32_t> ids = by_name(names);
  for (const std::uint32_t id : ids) {
    const bool in_old = old_side.has(id), in_new = new_side.has(id);
    diff.old_tensors += in_old;
    diff.new_tensors += in_new;
    TensorChange change{std::string(names.name(id)), TensorChangeKind::placement, {}};
    if (!in_new) {
      change.kind = TensorChangeKind::only_old;
      change.fields = where_placed(old_side, id, true);
    } else if (!in_old) {
      change.kind = TensorChangeKind::only_new;
      change.fields = where_placed(new_side, id, false);
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
      change.fields = placement_changes(old_side, new_side, id);
    }
    diff.tensors.push_back(std::move(change));
  }
  return diff;
}

}  // namespace

PlanDiff diff_plans(std::string_view old_text, std::string_view old_name, std::string_view new_text,
                    std::string_view new_name) {
  detail::NameTable names;
  const PlanRecords a = detail::read_plan_records(old_text, old_name, names);
  const PlanRecords b = detail::read_plan_records(new_text, new_name, names);
  return compare_records(a, b, names, old_name, new_name);
}

PlanDiff diff_plan_files(const std::string& old_path, const std::string& new_path) {
  // Each file's text is dropped once read into records: one plan's text in memory at a time.
  detail::NameTable names;
  detail::FileText text;
  text.read(old_path);
  const PlanRecords a = detail::read_plan_records(text.view(), old_path, names);
  text.read(new_path);
  const PlanRecords b = detail::read_plan_records(text.view(), new_path, names);
  return compare_records(a, b, names, old_path, new_path);
}

}  // namespace shardwise::plan
