// The two forms of a plan diff: aligned rows for people, one JSON object for programs.

#include <algorithm>
#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/printable.hpp>
#include <shardwise/plan/plan_diff.hpp>

namespace shardwise::plan {
namespace {

using ordered = nlohmann::ordered_json;

std::size_t count(const PlanDiff& diff, TensorChangeKind kind) {
  return static_cast<std::size_t>(std::count_if(diff.tensors.begin(), diff.tensors.end(),
                                                [&](const TensorChange& t) { return t.kind == kind; }));
}

std::string plural(std::size_t n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// "ranks: 0-1 -> all; slice: dim1[0:512] dim1[512:1024] -> whole", or for a tensor one plan lacks,
// "ranks: all; output: x"; appended to `out`, escaped as printable() escapes.
void append_changes(std::string& out, const TensorChange& t) {
  bool first = true;
  for (const FieldChange& f : t.fields) {
    if (!first) out += "; ";
    first = false;
    append_printable(out, f.field);
    out += ": ";
    switch (t.kind) {
      case TensorChangeKind::placement:
        append_printable(out, f.old_value);
        out += " -> ";
        append_printable(out, f.new_value);
        break;
      case TensorChangeKind::only_old:
        append_printable(out, f.old_value);
        break;
      case TensorChangeKind::only_new:
        append_printable(out, f.new_value);
        break;
    }
  }
}

// About the size of either form: reserved once, instead of the text being copied as it grows.
std::size_t size_hint(const PlanDiff& diff) {
  std::size_t size = 4096;
  for (const TensorChange& t : diff.tensors) {
    size += 2 * t.name.size() + 64;
    for (const FieldChange& f : t.fields)
      size += f.field.size() + f.old_value.size() + f.new_value.size() + 32;
  }
  return size;
}

bool is_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

void append_section(std::string& out, const PlanDiff& diff, TensorChangeKind kind, const std::string& title,
                    const char* heading) {
  std::size_t width = 6;  // "SOURCE"
  std::size_t rows = 0;
  for (const TensorChange& t : diff.tensors) {
    if (t.kind != kind) continue;
    width = std::max(width, printable(t.name).size());
    ++rows;
  }
  if (rows == 0) return;
  fmt::format_to(std::back_inserter(out), "\n{}: {}\n  {:<{}}  {}\n", title,
                 plural(rows, "source tensor", "source tensors"), "SOURCE", width, heading);
  for (const TensorChange& t : diff.tensors) {
    if (t.kind != kind) continue;
    out += "  ";
    if (is_ascii(t.name)) {  // fmt pads by display width: for ASCII, one column a byte
      const std::size_t before = out.size();
      append_printable(out, t.name);
      out.append(width - std::min(width, out.size() - before), ' ');
    } else {
      fmt::format_to(std::back_inserter(out), "{:<{}}", printable(t.name), width);
    }
    out += "  ";
    append_changes(out, t);
    out += '\n';
  }
}

ordered field_json(const FieldChange& f, TensorChangeKind kind) {
  ordered entry = {{"field", f.field}, {"old", f.old_value}, {"new", f.new_value}};
  if (kind == TensorChangeKind::only_old) entry["new"] = nullptr;
  if (kind == TensorChangeKind::only_new) entry["old"] = nullptr;
  return entry;
}

const char* kind_name(TensorChangeKind kind) {
  switch (kind) {
    case TensorChangeKind::placement:
      return "placement";
    case TensorChangeKind::only_old:
      return "only_old";
    case TensorChangeKind::only_new:
      return "only_new";
  }
  return "placement";
}

std::string dump(const ordered& value) {
  return value.dump(-1, ' ', false, ordered::error_handler_t::replace);
}

// A string as dump() writes it: printable ASCII without quotes or backslashes as it is, anything
// else through dump().
void append_json_string(std::string& out, std::string_view text) {
  const bool plain = std::all_of(text.begin(), text.end(),
                                 [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (!plain) {
    out += dump(std::string(text));
    return;
  }
  out += '"';
  out += text;
  out += '"';
}

// One tensor's entry as dump() of {"name", "change", "fields": [{"field", "old", "new"}]} writes it.
void append_tensor_json(std::string& out, const TensorChange& t) {
  out += "{\"name\":";
  append_json_string(out, t.name);
  out += ",\"change\":\"";
  out += kind_name(t.kind);
  out += "\",\"fields\":[";
  for (std::size_t i = 0; i < t.fields.size(); ++i) {
    const FieldChange& f = t.fields[i];
    out += i == 0 ? "{\"field\":" : ",{\"field\":";
    append_json_string(out, f.field);
    out += ",\"old\":";
    if (t.kind == TensorChangeKind::only_new)
      out += "null";
    else
      append_json_string(out, f.old_value);
    out += ",\"new\":";
    if (t.kind == TensorChangeKind::only_old)
      out += "null";
    else
      append_json_string(out, f.new_value);
    out += '}';
  }
  out += "]}";
}

}  // namespace

// Names and values from the plans are escaped as they are written (printable); the rest is ours.
std::string format_plan_diff_text(const PlanDiff& diff) {
  std::string out;
  out.reserve(size_hint(diff));
  fmt::format_to(std::back_inserter(out), "diff: {} -> {}\n", diff.old_name, diff.new_name);
  for (const FieldChange& f : diff.context) {
    fmt::format_to(std::back_inserter(out), "{}: {} -> {}\n", f.field, printable(f.old_value),
                   printable(f.new_value));
  }
  if (!diff.plan_changes.empty()) {
    fmt::format_to(std::back_inserter(out), "\nplan: {}\n",
                   plural(diff.plan_changes.size(), "change", "changes"));
    for (const FieldChange& f : diff.plan_changes) {
      fmt::format_to(std::back_inserter(out), "  {}: {} -> {}\n", f.field, printable(f.old_value),
                     printable(f.new_value));
    }
  }
  append_section(out, diff, TensorChangeKind::placement, "placed differently", "CHANGES (OLD -> NEW)");
  append_section(out, diff, TensorChangeKind::only_old, "only in " + diff.old_name, "PLACEMENT");
  append_section(out, diff, TensorChangeKind::only_new, "only in " + diff.new_name, "PLACEMENT");
  if (!diff.differ()) {
    fmt::format_to(std::back_inserter(out), "\nthe plans place all {} the same way\n",
                   plural(diff.same, "source tensor", "source tensors"));
    return out;
  }
  fmt::format_to(
      std::back_inserter(out),
      "\n{} placed differently, {} only in {}, {} only in {}, {} the same; {} plan-level {} (of {} source "
      "tensors in {}, {} in {})\n",
      count(diff, TensorChangeKind::placement), count(diff, TensorChangeKind::only_old), diff.old_name,
      count(diff, TensorChangeKind::only_new), diff.new_name, diff.same, diff.plan_changes.size(),
      diff.plan_changes.size() == 1 ? "change" : "changes", diff.old_tensors, diff.old_name, diff.new_tensors,
      diff.new_name);
  return out;
}

std::string format_plan_diff_json(const PlanDiff& diff) {
  const auto fields = [](const std::vector<FieldChange>& list, TensorChangeKind kind) {
    ordered array = ordered::array();
    for (const FieldChange& f : list) array.push_back(field_json(f, kind));
    return array;
  };
  std::string out;
  out.reserve(size_hint(diff));
  out += "{\"format\": \"shardwise-plan-diff\", \"version\": 1";
  out += ", \"old\": " + dump(diff.old_name) + ", \"new\": " + dump(diff.new_name);
  out += fmt::format(", \"differ\": {},\n", diff.differ());
  out += " \"context\": " + dump(fields(diff.context, TensorChangeKind::placement)) + ",\n";
  out += " \"plan_changes\": " + dump(fields(diff.plan_changes, TensorChangeKind::placement)) + ",\n";
  out += " \"tensors\": [";
  for (std::size_t i = 0; i < diff.tensors.size(); ++i) {
    out += i == 0 ? "\n  " : ",\n  ";
    append_tensor_json(out, diff.tensors[i]);
  }
  out += diff.tensors.empty() ? "],\n" : "\n ],\n";
  const ordered totals = {{"placed_differently", count(diff, TensorChangeKind::placement)},
                          {"only_old", count(diff, TensorChangeKind::only_old)},
                          {"only_new", count(diff, TensorChangeKind::only_new)},
                          {"same", diff.same},
                          {"old_tensors", diff.old_tensors},
                          {"new_tensors", diff.new_tensors}};
  out += " \"totals\": " + dump(totals) + "\n}\n";
  return out;
}

}  // namespace shardwise::plan
