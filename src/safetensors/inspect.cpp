#include <shardwise/safetensors/inspect.hpp>

#include <algorithm>
#include <array>
#include <iterator>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/printable.hpp>

namespace shardwise::st {

namespace {

// "1.5 GiB"-style size for the totals line; exact bytes are printed beside it.
std::string human_bytes(std::uint64_t bytes) {
  static constexpr std::array<const char*, 5> kUnits = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < kUnits.size()) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

bool is_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Appends `cell` padded with spaces to `width`, as fmt's "{:<{}}" (or "{:>{}}") would: ASCII cells
// (nearly all) directly, others through fmt, which pads to their display width, not their bytes.
void append_padded(std::string& out, std::string_view cell, std::size_t width, bool right_aligned) {
  if (!is_ascii(cell)) {
    if (right_aligned)
      fmt::format_to(std::back_inserter(out), "{:>{}}", cell, width);
    else
      fmt::format_to(std::back_inserter(out), "{:<{}}", cell, width);
    return;
  }
  const std::size_t padding = width > cell.size() ? width - cell.size() : 0;
  if (right_aligned) out.append(padding, ' ');
  out += cell;
  if (!right_aligned) out.append(padding, ' ');
}

// The table is built directly into one reserved string: a row costs a few appends, and each file's
// name is made printable once, not once per tensor.
std::string text_report(const Checkpoint& checkpoint) {
  struct Row {
    std::array<std::string, 4> cells;  // name, dtype, shape, bytes
    std::string_view file;
  };
  std::vector<std::string> file_names;
  for (std::size_t i = 0; i < checkpoint.files().size(); ++i)
    file_names.push_back(printable(checkpoint.file_name(i)));
  std::vector<Row> rows;
  rows.reserve(checkpoint.tensors().size() + 1);
  rows.push_back({{"TENSOR", "DTYPE", "SHAPE", "BYTES"}, "FILE"});
  for (const auto& ref : checkpoint.tensors()) {
    const TensorInfo& t = *ref.info;
    rows.push_back({{printable(t.name), std::string(dtype_name(t.dtype)), shape_text(t.shape),
                     std::to_string(t.bytes())},
                    file_names[ref.file]});
  }
  std::array<std::size_t, 4> width{};
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < width.size(); ++i) width[i] = std::max(width[i], row.cells[i].size());
  }
  std::string out;
  std::size_t size = 0;
  for (const auto& row : rows) size += width[0] + width[1] + width[2] + width[3] + 8 + row.file.size() + 1;
  out.reserve(size + 100);  // and the totals line
  for (const auto& row : rows) {
    append_padded(out, row.cells[0], width[0], false);
    out += "  ";
    append_padded(out, row.cells[1], width[1], false);
    out += "  ";
    append_padded(out, row.cells[2], width[2], false);
    out += "  ";
    append_padded(out, row.cells[3], width[3], true);
    out += "  ";
    out += row.file;
    out += '\n';
  }
  const std::size_t files = checkpoint.files().size(), tensors = checkpoint.tensors().size();
  const std::uint64_t bytes = checkpoint.total_bytes();
  out += fmt::format("total: {} file{}, {} tensor{}, {} bytes ({})\n", files, files == 1 ? "" : "s", tensors,
                     tensors == 1 ? "" : "s", bytes, human_bytes(bytes));
  return out;
}

// One tensor per line (greppable, diffable), keys in the documented order.
std::string json_report(const Checkpoint& checkpoint) {
  using ordered = nlohmann::ordered_json;
  // Names were checked to be UTF-8 when read; file names come from the file system and may not be.
  const auto dump = [](const ordered& value) {
    return value.dump(-1, ' ', false, ordered::error_handler_t::replace);
  };
  std::string out = "{\"tensors\": [";
  const char* separator = "\n  ";
  for (const auto& ref : checkpoint.tensors()) {
    const TensorInfo& t = *ref.info;
    ordered row = {{"name", t.name},
                   {"dtype", dtype_name(t.dtype)},
                   {"shape", t.shape},
                   {"file", checkpoint.file_name(ref.file)},
                   {"bytes", t.bytes()}};
    out += separator + dump(row);
    separator = ",\n  ";
  }
  const ordered totals = {{"files", checkpoint.files().size()},
                          {"tensors", checkpoint.tensors().size()},
                          {"bytes", checkpoint.total_bytes()}};
  out += checkpoint.tensors().empty() ? "],\n" : "\n],\n";
  out += "\"totals\": " + dump(totals) + "}\n";
  return out;
}

}  // namespace

std::string inspect_report(const Checkpoint& checkpoint, InspectFormat format) {
  return format == InspectFormat::json ? json_report(checkpoint) : text_report(checkpoint);
}

}  // namespace shardwise::st
