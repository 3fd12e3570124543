#include "safetensors/header_fast.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <shardwise/core/memory.hpp>
#include <shardwise/core/parallel.hpp>
#include "safetensors/header_json.hpp"
#include "safetensors/json_scan.hpp"
#include "safetensors/name_order.hpp"

namespace shardwise::st::detail {

namespace {

// One tensor entry as read, kept compact (32 bytes): names and shapes stay where they are (in the
// text, in a shared pool of dimensions) until the tensors are built, once, in name order.
struct Entry {
  std::uint32_t name_at = 0;  // the name's bytes in the text (headers are at most 100 MB)
  std::uint32_t name_size = 0;
  std::uint32_t dims_at = 0;  // the shape in `Reader::dims`
  std::uint16_t rank = 0;     // at most kMaxRank
  DType dtype = DType::BOOL;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};
static_assert(kMaxRank <= UINT16_MAX);

class Reader {
 public:
  // Reads `text` from `start`: 0, or where read() of another Reader stops (a member of the object).
  explicit Reader(std::string_view text, std::size_t start = 0) : text_(text), in_(text, start) {}

  // The whole text: one object of entries and at most one __metadata__, then only whitespace. With
  // `stop`, reading stops (true, `stopped`) where a member would begin at `stop`: another Reader
  // reads the rest (read_rest); it reads on to the end when no member begins there.
  bool read(Header& header, std::size_t stop = std::string_view::npos) {
    if (!in_.consume('{')) return false;
    if (!in_.consume('}') && !read_members(header, stop)) return false;
    return stopped || in_.at_end();
  }
  // The rest of the object from a member's start, as read() would read it there.
  bool read_rest(Header& header) { return read_members(header, std::string_view::npos) && in_.at_end(); }

  std::string_view name(const Entry& e) const { return text_.substr(e.name_at, e.name_size); }
  std::span<const std::uint64_t> shape(const Entry& e) const { return {dims.data() + e.dims_at, e.rank}; }

  HugeVector<Entry> entries;  // in the order of the text
  HugeVector<std::uint64_t> dims;
  bool has_metadata = false;
  bool stopped = false;

 private:
  // Members (`"key": value`, comma separated) up to and with the object's closing brace.
  bool read_members(Header& header, std::size_t stop) {
    do {
      if (in_.next_position() == stop) {
        stopped = true;
        return true;
      }
      std::string_view key;
      if (!in_.string(key) || !in_.consume(':')) return false;
      if (key == "__metadata__") {
        if (has_metadata || !read_metadata(header.metadata)) return false;
        has_metadata = true;
      } else if (!read_entry(key)) {
        return false;
      }
    } while (in_.consume(','));
    return in_.consume('}');
  }

 private:
  bool read_metadata(std::map<std::string, std::string>& metadata) {
    if (!in_.consume('{')) return false;
    if (in_.consume('}')) return true;
    do {
      std::string_view key, value;
      if (!in_.string(key) || !in_.consume(':') || !in_.string(value)) return false;
      if (!metadata.emplace(key, value).second) return false;  // a key twice
    } while (in_.consume(','));
    return in_.consume('}');
  }

  // {"dtype": str, "shape": [uint], "data_offsets": [uint, uint]}, fields in any order, each once.
  bool read_entry(std::string_view name) {
    Entry e;
    e.name_at = static_cast<std::uint32_t>(name.data() - text_.data());
    e.name_size = static_cast<std::uint32_t>(name.size());
    e.dims_at = static_cast<std::uint32_t>(dims.size());
    bool has_dtype = false, has_shape = false, has_offsets = false;
    if (!in_.consume('{')) return false;
    do {
      std::string_view field;
      if (!in_.string(field) || !in_.consume(':')) return false;
      if (field == "dtype" && !has_dtype) {
        std::string_view dtype_text;
        if (!in_.string(dtype_text)) return false;
        const auto dtype = parse_dtype(dtype_text);
        if (!dtype) return false;
        e.dtype = *dtype;
        has_dtype = true;
      } else if (field == "shape" && !has_shape) {
        if (!read_shape(e)) return false;
        has_shape = true;
      } else if (field == "data_offsets" && !has_offsets) {
        if (!read_offsets(e)) return false;
        has_offsets = true;
      } else {
        return false;  // unknown field, or one given twice
      }
    } while (in_.consume(','));
    if (!in_.consume('}') || !(has_dtype && has_shape && has_offsets)) return false;
    entries.push_back(e);
    return true;
  }

  // [uint, ...] with at most kMaxRank dimensions, appended to `dims`.
  bool read_shape(Entry& e) {
    if (!in_.consume('[')) return false;
    if (in_.consume(']')) return true;
    do {
      std::uint64_t dim = 0;
      if (e.rank == kMaxRank || !in_.uint(dim)) return false;
      dims.push_back(dim);
      ++e.rank;
    } while (in_.consume(','));
    return in_.consume(']');
  }

  // Exactly [uint, uint].
  bool read_offsets(Entry& e) {
    return in_.consume('[') && in_.uint(e.begin) && in_.consume(',') && in_.uint(e.end) && in_.consume(']');
  }

  std::string_view text_;
  JsonScanner in_;
};

// What check_entry in header.cpp requires: a size that fits 64 bits and data_offsets that hold
// exactly those bytes.
bool sizes_agree(const Reader& reader) {
  for (const Entry& e : reader.entries) {
    const auto bytes = byte_size(e.dtype, reader.shape(e));
    if (!bytes || e.begin > e.end || e.end - e.begin != *bytes) return false;
  }
  return true;
}

using Range = std::pair<std::uint64_t, std::uint64_t>;

// What check_layout in header.cpp requires: taken in (begin, end) order, the tensors (the entries
// of `lists`, in order) tile [0, data_bytes) exactly. Headers are usually written in data order,
// so the sort is rarely needed.
bool tiles(std::span<const HugeVector<Entry>* const> lists, std::uint64_t data_bytes) {
  const auto by_range = [](const Entry& a, const Entry& b) {
    return Range(a.begin, a.end) < Range(b.begin, b.end);
  };
  bool in_order = true;
  const Entry* last = nullptr;
  for (const HugeVector<Entry>* list : lists) {
    if (list->empty()) continue;
    in_order = in_order && (last == nullptr || !by_range(list->front(), *last)) &&
               std::is_sorted(list->begin(), list->end(), by_range);
    last = &list->back();
  }
  std::uint64_t cursor = 0;
  if (in_order) {  // no copy of 100,000s of ranges
    for (const HugeVector<Entry>* list : lists) {
      for (const Entry& e : *list) {
        if (e.begin != cursor) return false;
        cursor = e.end;
      }
    }
    return cursor == data_bytes;
  }
  std::vector<Range> ranges;
  std::size_t count = 0;
  for (const HugeVector<Entry>* list : lists) count += list->size();
  ranges.reserve(count);
  for (const HugeVector<Entry>* list : lists) {
    for (const Entry& e : *list) ranges.emplace_back(e.begin, e.end);
  }
  std::sort(ranges.begin(), ranges.end());
  for (const auto& [begin, end] : ranges) {
    if (begin != cursor) return false;
    cursor = end;
  }
  return cursor == data_bytes;
}

// Lists of 100,000s of entries are filled once (on huge pages): room for a typical entry's length
// of text, fewer reallocations.
void reserve_entries(Reader& reader, std::size_t text_bytes) {
  reader.entries.reserve(text_bytes / 100);
  reader.dims.reserve(text_bytes / 40);
}

// Where a second reader may start: the first member after the middle of the text that follows
// `},` (the end of an entry, as writers put it), or npos. A guess: the first reader confirms it
// only if it finds a member beginning exactly there.
std::size_t split_point(std::string_view text) {
  const std::size_t brace = text.find("},", text.size() / 2);
  if (brace == std::string_view::npos) return std::string_view::npos;
  JsonScanner at(text, brace + 2);
  const std::size_t member = at.next_position();
  return at.peek() == '"' ? member : std::string_view::npos;
}

// An entry of the text: its place in the entries of the first part, or in those of the second
// with kSecond set.
using EntryId = std::uint32_t;
constexpr EntryId kSecond = EntryId{1} << 31;

// One part of the text read by its own Reader, which then checks its entries' sizes and puts them
// in name order: the work of one thread.
struct Part {
  Part(std::string_view text, std::size_t start) : reader(text, start) {}

  // Reads the part (the whole text when `first`, up to `stop`), then checks and sorts what it read.
  void read(std::size_t text_bytes, bool first, std::size_t stop = std::string_view::npos) {
    reserve_entries(reader, text_bytes);
    ok = (first ? reader.read(header, stop) : reader.read_rest(header)) && sizes_agree(reader);
    if (!ok) return;
    order.resize(reader.entries.size());
    const EntryId tag = first ? 0 : kSecond;
    for (EntryId i = 0; i < order.size(); ++i) order[i] = i;
    sort_runs(order, [this](EntryId a, EntryId b) {
      return reader.name(reader.entries[a]) < reader.name(reader.entries[b]);
    });
    if (tag != 0) {
      for (EntryId& id : order) id |= tag;
    }
  }

  Reader reader;
  Header header;              // the metadata read
  HugeVector<EntryId> order;  // the entries by name
  bool ok = false;
};

// The text's entries in one or two parts, and their order by name.
struct Entries {
  const Part* first = nullptr;
  const Part* second = nullptr;  // null when the first part holds every entry
  HugeVector<EntryId> order;

  const Entry& at(EntryId id) const {
    return (id & kSecond) != 0 ? second->reader.entries[id & ~kSecond] : first->reader.entries[id];
  }
  const Reader& reader(EntryId id) const { return (id & kSecond) != 0 ? second->reader : first->reader; }
  std::string_view name(EntryId id) const { return first->reader.name(at(id)); }  // both view the text
};

// The text read as Reader::read reads it, the second half of a large one on another thread, each
// part checked and sorted on its thread. False when the text is not what the fast path reads.
bool read_text(Part& first, Part& second, Entries& entries, std::string_view text, std::size_t split_from,
               Header& header) {
  const std::size_t split = text.size() >= split_from ? split_point(text) : std::string_view::npos;
  entries.first = &first;
  if (split == std::string_view::npos) {
    first.read(text.size(), true);
    header.metadata = std::move(first.header.metadata);
    entries.order = std::move(first.order);
    return first.ok;
  }
  second = Part(text, split);
  run_beside([&] { first.read(split, true, split); }, [&] { second.read(text.size() - split, false); });
  if (!first.ok) return false;
  header.metadata = std::move(first.header.metadata);
  if (!first.reader.stopped) {  // no member begins at the split: read whole by the first part
    entries.order = std::move(first.order);
    return true;
  }
  if (!second.ok || (first.reader.has_metadata && second.reader.has_metadata)) return false;
  if (second.reader.has_metadata) header.metadata = std::move(second.header.metadata);
  entries.second = &second;
  return true;
}

// Where the first `k` items of the stable merge of the sorted lists `a` and `b` come from: the
// first i of `a` (returned) and the first k - i of `b`.
template <class Less>
std::size_t merge_split(std::span<const EntryId> a, std::span<const EntryId> b, std::size_t k, Less less) {
  std::size_t lo = k > b.size() ? k - b.size() : 0, hi = std::min(k, a.size());
  while (lo < hi) {
    const std::size_t i = lo + (hi - lo) / 2;
    if (less(b[k - i - 1], a[i])) {
      hi = i;
    } else {
      lo = i + 1;
    }
  }
  return lo;
}

// The tensors of `entries.order[from, to)`, already merged there, built into `header.tensors`
// (sized) with their names copied into `names` from `name_at` on. False on a name given twice
// (the full path names it).
bool build(const Entries& entries, std::size_t from, std::size_t to, Header& header, char* names,
           std::size_t name_at) {
  std::string_view previous;
  for (std::size_t k = from; k < to; ++k) {
    const EntryId id = entries.order[k];
    const Entry& e = entries.at(id);
    const std::string_view name = entries.name(id);
    if (k > from && name == previous) return false;
    char* kept = names + name_at;
    std::memcpy(kept, name.data(), name.size());
    kept[name.size()] = '\0';
    name_at += name.size() + 1;
    previous = std::string_view(kept, name.size());
    header.tensors[k] =
        TensorInfo{previous, e.dtype, SmallShape(entries.reader(id).shape(e)), e.begin, e.end};
  }
  return true;
}

std::size_t name_bytes(const Entries& entries, std::size_t from, std::size_t to) {
  std::size_t total = 0;
  for (std::size_t k = from; k < to; ++k) total += entries.at(entries.order[k]).name_size + 1;
  return total;
}

// The tensors in name order, their names in one block: on two threads when the text was read in
// two parts (each merges and builds half of the list).
bool build_tensors(Entries& entries, Header& header) {
  const auto less = [&entries](EntryId a, EntryId b) { return entries.name(a) < entries.name(b); };
  std::span<const EntryId> a, b;
  std::size_t count = entries.order.size();
  if (entries.second != nullptr) {
    a = entries.first->order;
    b = entries.second->order;
    count = a.size() + b.size();
    entries.order.resize(count);
  }
  std::size_t total_names = 0;
  for (const Part* part : {entries.first, entries.second}) {
    if (part == nullptr) continue;
    for (const Entry& e : part->reader.entries) total_names += e.name_size + 1;
  }
  header.tensors.resize(count);  // 16 MB at Pro's count
  if (total_names == 0) return true;
  std::shared_ptr<char[]> names(allocate_array(total_names), HugeFree());
  if (entries.second == nullptr) {
    if (!build(entries, 0, count, header, names.get(), 0)) return false;
    header.names = std::move(names);
    return true;
  }
  const std::size_t half = count / 2;
  const std::size_t from_a = merge_split(a, b, half, less);
  auto out = entries.order.begin();
  bool ok = false;
  bool rest_ok = false;
  run_beside(
      [&] {
        std::merge(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(from_a), b.begin(),
                   b.begin() + static_cast<std::ptrdiff_t>(half - from_a), out, less);
        ok = build(entries, 0, half, header, names.get(), 0);
      },
      [&] {
        const auto at = out + static_cast<std::ptrdiff_t>(half);
        std::merge(a.begin() + static_cast<std::ptrdiff_t>(from_a), a.end(),
                   b.begin() + static_cast<std::ptrdiff_t>(half - from_a), b.end(), at, less);
        rest_ok =
            build(entries, half, count, header, names.get(), total_names - name_bytes(entries, half, count));
      });
  if (!ok || !rest_ok) return false;
  if (half > 0 && half < count && header.tensors[half - 1].name == header.tensors[half].name) return false;
  header.names = std::move(names);
  return true;
}

}  // namespace

std::optional<Header> read_header_fast(std::string_view text, std::uint64_t data_bytes,
                                       std::size_t split_from) {
  if (text.size() > UINT32_MAX) return std::nullopt;  // offsets are kept in 32 bits
  Header header;
  Part first(text, 0), second(text, 0);
  Entries entries;
  if (!read_text(first, second, entries, text, split_from, header)) return std::nullopt;
  const HugeVector<Entry>* lists[] = {&first.reader.entries, &second.reader.entries};
  const std::size_t list_count = entries.second != nullptr ? 2 : 1;
  if (!tiles(std::span(lists, list_count), data_bytes) || !build_tensors(entries, header))
    return std::nullopt;
  return header;
}

}  // namespace shardwise::st::detail
