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

std::string plural(std::size_t n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// "ranks: 0-1 -> all; slice: dim1[0:512] dim1[512:1024] -> whole", or for a tensor one plan lacks,
// "ranks: all; output: x"; appended to `out`, escaped as printable() escapes.
void append_changes(std::string& out, const TensorChangeView& t) {
  bool first = true;
  for (const FieldChangeView& f : t.fields) {
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

// Output is handed to the sink in pieces of about this size.
constexpr std::size_t kPiece = std::size_t{1} << 20;

// Gathers the output and hands it on piece by piece.
class Writer {
 public:
  explicit Writer(const DiffSink& sink) : sink_(sink) { out.reserve(kPiece + (kPiece >> 2)); }
  // Called after each row: hands the text on once a piece is full.
  void row_done() {
    if (out.size() >= kPiece) flush();
  }
  void flush() {
    if (!out.empty()) sink_(out);
    out.clear();
  }
  std::string out;

 private:
  const DiffSink& sink_;
};

bool is_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

void append_section(Writer& w, const PlanDiff& diff, TensorChangeKind kind, const std::string& title,
                    const char* heading) {
  const std::uint64_t rows = diff.count(kind);
  if (rows == 0) return;
  std::size_t width = 6;  // "SOURCE"
  diff.for_each_name(kind, [&](std::string_view name) {
    width = std::max(width, is_printable(name) ? name.size() : printable(name).size());
  });
  std::string& out = w.out;
  fmt::format_to(std::back_inserter(out), "\n{}: {}\n  {:<{}}  {}\n", title,
                 plural(rows, "source tensor", "source tensors"), "SOURCE", width, heading);
  diff.for_each_tensor(kind, [&](const TensorChangeView& t) {
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
    w.row_done();
  });
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
void append_tensor_json(std::string& out, const TensorChangeView& t) {
  out += "{\"name\":";
  append_json_string(out, t.name);
  out += ",\"change\":\"";
  out += kind_name(t.kind);
  out += "\",\"fields\":[";
  for (std::size_t i = 0; i < t.fields.size(); ++i) {
    const FieldChangeView& f = t.fields[i];
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
void write_plan_diff_text(const PlanDiff& diff, const DiffSink& sink) {
  Writer w(sink);
  std::string& out = w.out;
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
  append_section(w, diff, TensorChangeKind::placement, "placed differently", "CHANGES (OLD -> NEW)");
  append_section(w, diff, TensorChangeKind::only_old, "only in " + diff.old_name, "PLACEMENT");
  append_section(w, diff, TensorChangeKind::only_new, "only in " + diff.new_name, "PLACEMENT");
  if (!diff.differ()) {
    fmt::format_to(std::back_inserter(out), "\nthe plans place all {} the same way\n",
                   plural(diff.same, "source tensor", "source tensors"));
  } else {
    fmt::format_to(
        std::back_inserter(out),
        "\n{} placed differently, {} only in {}, {} only in {}, {} the same; {} plan-level {} (of {} "
        "source tensors in {}, {} in {})\n",
        diff.placed_differently, diff.only_old, diff.old_name, diff.only_new, diff.new_name, diff.same,
        diff.plan_changes.size(), diff.plan_changes.size() == 1 ? "change" : "changes", diff.old_tensors,
        diff.old_name, diff.new_tensors, diff.new_name);
  }
  w.flush();
}

void write_plan_diff_json(const PlanDiff& diff, const DiffSink& sink) {
  const auto fields = [](const std::vector<FieldChange>& list, TensorChangeKind kind) {
    ordered array = ordered::array();
    for (const FieldChange& f : list) array.push_back(field_json(f, kind));
    return array;
  };
  Writer w(sink);
  std::string& out = w.out;
  out += "{\"format\": \"shardwise-plan-diff\", \"version\": 1";
  out += ", \"old\": " + dump(diff.old_name) + ", \"new\": " + dump(diff.new_name);
  out += fmt::format(", \"differ\": {},\n", diff.differ());
  out += " \"context\": " + dump(fields(diff.context, TensorChangeKind::placement)) + ",\n";
  out += " \"plan_changes\": " + dump(fields(diff.plan_changes, TensorChangeKind::placement)) + ",\n";
  out += " \"tensors\": [";
  bool first = true;
  diff.for_each_tensor(std::nullopt, [&](const TensorChangeView& t) {
    out += first ? "\n  " : ",\n  ";
    first = false;
    append_tensor_json(out, t);
    w.row_done();
  });
  out += first ? "],\n" : "\n ],\n";
  const ordered totals = {{"placed_differently", diff.placed_differently},
                          {"only_old", diff.only_old},
                          {"only_new", diff.only_new},
                          {"same", diff.same},
                          {"old_tensors", diff.old_tensors},
                          {"new_tensors", diff.new_tensors}};
  out += " \"totals\": " + dump(totals) + "\n}\n";
  w.flush();
}

std::string format_plan_diff_text(const PlanDiff& diff) {
  std::string out;
  write_plan_diff_text(diff, [&](std::string_view piece) { out += piece; });
  return out;
}

std::string format_plan_diff_json(const PlanDiff& diff) {
  std::string out;
  write_plan_diff_json(diff, [&](std::string_view piece) { out += piece; });
  return out;
}

}  // namespace shardwise::plan
