// A JSON plan read with nlohmann's SAX interface: values are built into a DOM, except that each
// tensor of `outputs[].tensors` and each entry of `skipped` is turned into a record as soon as its
// object closes and then dropped, so memory follows the records, not the JSON.

#include "plan/plan_reader.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <set>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

namespace shardwise::plan::detail {

std::uint32_t NameTable::intern(std::string_view name) {
  if (next_ < names_.size() && names_[next_] == name) return next_++;
  if (2 * (names_.size() + 1) > slots_.size()) rehash(std::max<std::size_t>(64, 2 * slots_.size()));
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t slot = std::hash<std::string_view>()(name) & mask;; slot = (slot + 1) & mask) {
    if (slots_[slot] == 0) {
      const auto id = static_cast<std::uint32_t>(names_.size());
      names_.push_back(text_.add(name));
      slots_[slot] = id + 1;
      next_ = id + 1;
      return id;
    }
    if (names_[slots_[slot] - 1] == name) {
      next_ = slots_[slot];
      return slots_[slot] - 1;
    }
  }
}

void NameTable::reserve(std::size_t count) {
  names_.reserve(count);
  std::size_t slots = 64;
  while (slots < 2 * count) slots *= 2;
  if (slots > slots_.size()) rehash(slots);
}

void NameTable::truncate(std::size_t count) {
  if (count >= names_.size()) return;
  names_.resize(count);  // their text stays in text_ until the table goes: a rare path
  next_ = 0;
  rehash(slots_.size());
}

void NameTable::rehash(std::size_t slots) {
  slots_.assign(slots, 0);
  const std::size_t mask = slots - 1;
  for (std::size_t id = 0; id < names_.size(); ++id) {
    std::size_t slot = std::hash<std::string_view>()(names_[id]) & mask;
    while (slots_[slot] != 0) slot = (slot + 1) & mask;
    slots_[slot] = static_cast<std::uint32_t>(id + 1);
  }
}

namespace {

using nlohmann::json;

// An open container: where it sits, for messages ("outputs[3].tensors[17]") and to recognise the
// tensor and skipped objects.
struct Frame {
  json* value = nullptr;
  std::string key;       // the key it has in its parent object; empty in an array or at the top
  std::string next_key;  // objects: the key of the value being read
};

class PlanSax {
 public:
  PlanSax(std::string_view file, NameTable& names, PlanRecords& records)
      : file_(file), names_(names), records_(records) {}

  bool null() { return add(json(nullptr)); }
  bool boolean(bool value) { return add(json(value)); }
  bool number_integer(json::number_integer_t value) { return add(json(value)); }
  bool number_unsigned(json::number_unsigned_t value) { return add(json(value)); }
  bool number_float(json::number_float_t value, const json::string_t&) { return add(json(value)); }
  bool string(json::string_t& value) { return add(json(std::move(value))); }
  bool binary(json::binary_t&) { return fail("binary values are not JSON"); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool key(json::string_t& key) {
    if (frames_.back().value->contains(key)) return fail(fmt::format("the key \"{}\" appears twice", key));
    frames_.back().next_key = std::move(key);
    return true;
  }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    std::string what = e.what();
    if (const auto at = what.find("] "); what.starts_with("[json.exception") && at != std::string::npos) {
      what.erase(0, at + 2);
    }
    error_ = fmt::format("{}: not valid JSON: {}", file_, what);  // `what` has the line and column
    return false;
  }

  const std::string& error() const noexcept { return error_; }
  json& root() noexcept { return root_; }
  const HugeVector<std::size_t>& output_of_placement() const noexcept { return output_of_placement_; }

 private:
  bool fail(std::string message) {
    error_ = fmt::format("{}: {}: {}", file_, where(), message);
    return false;
  }

  // "outputs[3].tensors[17]": the open containers' path.
  std::string where() const {
    std::string path;
    for (std::size_t i = 1; i < frames_.size(); ++i) {
      const json& parent = *frames_[i - 1].value;
      if (parent.is_array()) {
        path += fmt::format("[{}]", parent.size() - 1);
      } else {
        path += (path.empty() ? "" : ".") + frames_[i].key;
      }
    }
    return path.empty() ? "the top level" : path;
  }

  json* place(json value) {
    if (frames_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    Frame& top = frames_.back();
    if (top.value->is_array()) {
      top.value->push_back(std::move(value));
      return &top.value->back();
    }
    return &((*top.value)[top.next_key] = std::move(value));
  }

  bool add(json value) {
    if (frames_.empty()) return fail("a plan is a JSON object");
    place(std::move(value));
    return true;
  }

  bool open(json container) {
    std::string key =
        frames_.empty() || frames_.back().value->is_array() ? std::string() : frames_.back().next_key;
    json* value = place(std::move(container));
    frames_.push_back(Frame{value, std::move(key), {}});
    return true;
  }

  bool is_tensor() const {
    return frames_.size() == 5 && frames_[1].key == "outputs" && frames_[1].value->is_array() &&
           frames_[3].key == "tensors" && frames_[3].value->is_array() && frames_[4].value->is_object();
  }
  bool is_skip() const {
    return frames_.size() == 3 && frames_[1].key == "skipped" && frames_[1].value->is_array() &&
           frames_[2].value->is_object();
  }

  bool close() {
    if (is_tensor()) {
      if (!take_tensor()) return false;
      frames_.pop_back();
      frames_.back().value->erase(frames_.back().value->size() - 1);
      return true;
    }
    if (is_skip()) {
      if (!take_skip()) return false;
      frames_.pop_back();
      frames_.back().value->erase(frames_.back().value->size() - 1);
      return true;
    }
    frames_.pop_back();
    return true;
  }

  bool take_tensor() {
    json& tensor = *frames_.back().value;
    const auto source = tensor.find("source");
    if (source == tensor.end() || !source->is_object()) return fail("no \"source\" object");
    const auto name = source->find("name");
    if (name == source->end() || !name->is_string()) return fail("no \"source\".\"name\" string");
    const std::uint32_t id = names_.intern(name->get_ref<const std::string&>());
    source->erase(name);
    tensor.erase("rule");
    records_.placements.push_back(PlacementRecord{id, 0, records_.text.add(tensor.dump())});
    output_of_placement_.push_back(frames_[1].value->size() - 1);
    return true;
  }

  bool take_skip() {
    json& skip = *frames_.back().value;
    const auto name = skip.find("name");
    if (name == skip.end() || !name->is_string()) return fail("no \"name\" string");
    const std::uint32_t id = names_.intern(name->get_ref<const std::string&>());
    skip.erase(name);
    skip.erase("rule");
    skip.erase("reason");
    records_.skipped.push_back(SkipRecord{id, records_.text.add(skip.dump())});
    return true;
  }

  std::string_view file_;
  NameTable& names_;
  PlanRecords& records_;
  json root_;
  std::vector<Frame> frames_;
  HugeVector<std::size_t> output_of_placement_;  // by placement: its index in `outputs`
  std::string error_;
};

[[noreturn]] void not_a_plan(std::string_view file, const std::string& what) {
  throw Error(ErrorKind::input, fmt::format("{}: not a shardwise plan: {}", file, what));
}

const json& member(const json& object, std::string_view file, const std::string& where, const char* key) {
  const auto it = object.find(key);
  if (it == object.end()) not_a_plan(file, fmt::format("{} has no \"{}\"", where, key));
  return *it;
}

std::uint64_t unsigned_member(const json& object, std::string_view file, const std::string& where,
                              const char* key) {
  const json& value = member(object, file, where, key);
  if (!value.is_number_unsigned())
    not_a_plan(file, fmt::format("{}.{} is not a non-negative integer", where, key));
  return value.get<std::uint64_t>();
}

// The checks the records rely on: a plan of version 1, every output with a rank below mp, once.
std::vector<std::uint64_t> check_head(const json& head, std::string_view file, std::uint64_t& mp) {
  if (!head.is_object()) not_a_plan(file, "the top level is not an object");
  const auto format = head.find("format");
  if (format == head.end() || *format != "shardwise-plan") {
    not_a_plan(file, "no \"format\": \"shardwise-plan\" (make plans with `shardwise plan --format json`)");
  }
  const std::uint64_t version = unsigned_member(head, file, "the plan", "version");
  if (version != 1) not_a_plan(file, fmt::format("version {} (this shardwise reads version 1)", version));
  mp = unsigned_member(head, file, "the plan", "model_parallel");
  if (mp == 0) not_a_plan(file, "model_parallel is 0");
  const json& outputs = member(head, file, "the plan", "outputs");
  const json& skipped = member(head, file, "the plan", "skipped");
  if (!outputs.is_array()) not_a_plan(file, "\"outputs\" is not an array");
  if (!skipped.is_array()) not_a_plan(file, "\"skipped\" is not an array");
  if (!skipped.empty()) not_a_plan(file, "\"skipped\" holds a value that is not an object");
  std::vector<std::uint64_t> ranks;
  std::set<std::uint64_t> seen;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::string where = fmt::format("outputs[{}]", i);
    if (!outputs[i].is_object()) not_a_plan(file, where + " is not an object");
    const std::uint64_t rank = unsigned_member(outputs[i], file, where, "rank");
    if (rank >= mp) not_a_plan(file, fmt::format("{}.rank is {}, but model_parallel is {}", where, rank, mp));
    if (!seen.insert(rank).second) not_a_plan(file, fmt::format("{}.rank {} appears twice", where, rank));
    if (!member(outputs[i], file, where, "file").is_string())
      not_a_plan(file, where + ".file is not a string");
    const json& tensors = member(outputs[i], file, where, "tensors");
    if (!tensors.is_array()) not_a_plan(file, where + ".tensors is not an array");
    // Objects were taken as records as they closed: anything left is not a tensor.
    if (!tensors.empty()) not_a_plan(file, where + ".tensors holds a value that is not an object");
    ranks.push_back(rank);
  }
  return ranks;
}

// The records and head of `text`: by the fast path when the text is plain, else by the SAX reader.
void read_records(std::string_view text, std::string_view file, NameTable& names, PlanRecords& records,
                  HugeVector<std::size_t>& output_of_placement, PlanReader reader) {
  const std::size_t known = names.size();
  if (reader == PlanReader::fast_when_plain) {
    // A placement takes 150+ bytes of text: reserved pages that are never used are never touched.
    records.placements.reserve(text.size() / 128);
    output_of_placement.reserve(text.size() / 128);
    names.reserve(names.size() + text.size() / 256);
    if (read_plain_plan(text, {records, names, output_of_placement})) return;
    records = PlanRecords();
    output_of_placement.clear();
    names.truncate(known);
  }
  PlanSax sax(file, names, records);
  if (!json::sax_parse(text.begin(), text.end(), &sax)) {
    throw Error(ErrorKind::input,
                sax.error().empty() ? fmt::format("{}: not valid JSON", file) : sax.error());
  }
  output_of_placement = sax.output_of_placement();
  records.head = std::move(sax.root());
}

// A fused output's record (plan_json's "composite") replaced by one record per part, each under its
// own source's name, with which output it is fused into and where ("fused": {"output", "position"}):
// diff then compares every part's placement (output name, slice, dtype, ...) as it compares a
// tensor's, and the deciding rules' labels of the parts are left out as for any tensor.
void expand_fused(PlanRecords& records, NameTable& names, std::string_view file) {
  std::vector<PlacementRecord> more;
  for (PlacementRecord& record : records.placements) {
    // Searched from its rare first letter, not from a quote (a record has dozens of quotes).
    if (record.fields.find("composite\"") == std::string::npos) continue;
    json fused = json::parse(record.fields);
    const auto composite = fused.find("composite");
    if (composite == fused.end() || !composite->is_object()) continue;
    const auto parts = composite->find("parts");
    const auto output = fused.find("name");
    if (parts == composite->end() || !parts->is_array() || parts->empty() || output == fused.end())
      not_a_plan(file, fmt::format("{}: a \"composite\" without \"parts\"", names.name(record.source)));
    std::vector<PlacementRecord> expanded;
    for (std::size_t i = 0; i < parts->size(); ++i) {
      json part = (*parts)[i];
      const auto source = part.find("source");
      if (!part.is_object() || source == part.end() || !source->is_object() || !source->contains("name") ||
          !(*source)["name"].is_string())
        not_a_plan(
            file, fmt::format("{}: a composite part without \"source\".\"name\"", names.name(record.source)));
      const std::uint32_t id = names.intern((*source)["name"].get_ref<const std::string&>());
      source->erase("name");
      part.erase("rule");
      part["fused"] = {{"output", *output}, {"position", i}};
      expanded.push_back(PlacementRecord{id, record.rank, records.text.add(part.dump())});
    }
    record = std::move(expanded.front());
    more.insert(more.end(), std::make_move_iterator(expanded.begin() + 1),
                std::make_move_iterator(expanded.end()));
  }
  records.placements.insert(records.placements.end(), std::make_move_iterator(more.begin()),
                            std::make_move_iterator(more.end()));
}

}  // namespace

namespace {

// A plan's records as read, made ready to compare: checked, placed on their ranks, fused outputs
// expanded, sorted.
PlanRecords finish(PlanRecords records, const HugeVector<std::size_t>& output_of_placement,
                   std::string_view file, NameTable& names) {
  const std::vector<std::uint64_t> ranks = check_head(records.head, file, records.model_parallel);
  for (std::size_t i = 0; i < records.placements.size(); ++i) {
    records.placements[i].rank = ranks[output_of_placement[i]];
  }
  expand_fused(records, names, file);
  std::sort(records.placements.begin(), records.placements.end(), [](const auto& a, const auto& b) {
    return std::tie(a.source, a.rank, a.fields) < std::tie(b.source, b.rank, b.fields);
  });
  std::sort(records.skipped.begin(), records.skipped.end(), [](const SkipRecord& a, const SkipRecord& b) {
    return std::tie(a.source, a.fields) < std::tie(b.source, b.fields);
  });
  return records;
}

}  // namespace

PlanRecords read_plan_records(std::string_view text, std::string_view file, NameTable& names,
                              PlanReader reader) {
  PlanRecords records;
  HugeVector<std::size_t> output_of_placement;
  read_records(text, file, names, records, output_of_placement, reader);
  return finish(std::move(records), output_of_placement, file, names);
}

PlanRecords read_plan_file(const std::string& path, NameTable& names, std::size_t window, std::size_t ahead) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
    FileText text;  // a pipe is read once, whole; for a missing file or a folder, FileText's error
    text.read(path);
    return read_plan_records(text.view(), path, names);
  }
  const std::size_t known = names.size();
  {
    PlanRecords records;
    HugeVector<std::size_t> output_of_placement;
    FileWindow in(path, window, ahead);
    // A placement takes 150+ bytes of text: reserved pages that are never used are never touched.
    const auto size = static_cast<std::size_t>(info.st_size);
    records.placements.reserve(size / 128);
    output_of_placement.reserve(size / 128);
    names.reserve(names.size() + size / 256);
    if (read_plain_plan(in, {records, names, output_of_placement}))
      return finish(std::move(records), output_of_placement, path, names);
  }
  // Not plain (or an object longer than the window's part ahead): the whole text, read in full.
  names.truncate(known);
  FileText text;
  text.read(path);
  return read_plan_records(text.view(), path, names, PlanReader::full);
}

void renumber(PlanRecords& records, const NameTable& from, NameTable& into) {
  HugeVector<std::uint32_t> id(from.size());
  into.reserve(into.size() + from.size());
  for (std::uint32_t i = 0; i < id.size(); ++i) id[i] = into.intern(from.name(i));
  for (PlacementRecord& p : records.placements) p.source = id[p.source];
  for (SkipRecord& s : records.skipped) s.source = id[s.source];
}

}  // namespace shardwise::plan::detail
