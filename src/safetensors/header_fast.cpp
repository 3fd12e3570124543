#include "safetensors/header_fast.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <shardwise/core/memory.hpp>
#include "safetensors/header_json.hpp"
#include "safetensors/json_scan.hpp"
#include "safetensors/name_order.hpp"

namespace shardwise::st::detail {

namespace {

// One tensor entry as read, kept compact: names and shapes stay where they are (in the text, in a
// shared pool of dimensions) until the tensors are built, once, in name order.
struct Entry {
  std::uint32_t name_at = 0;  // the name's bytes in the text (headers are at most 100 MB)
  std::uint32_t name_size = 0;
  std::uint32_t dims_at = 0;  // the shape in `Reader::dims`
  std::uint32_t rank = 0;
  DType dtype = DType::BOOL;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

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

// What check_layout in header.cpp requires: taken in (begin, end) order, the tensors tile
// [0, data_bytes) exactly. Headers are usually written in data order, so the sort is rarely needed.
bool tiles(const HugeVector<Entry>& entries, std::uint64_t data_bytes) {
  using Range = std::pair<std::uint64_t, std::uint64_t>;
  const auto by_range = [](const Entry& a, const Entry& b) {
    return Range(a.begin, a.end) < Range(b.begin, b.end);
  };
  std::uint64_t cursor = 0;
  if (std::is_sorted(entries.begin(), entries.end(), by_range)) {  // no copy of 100,000s of ranges
    for (const Entry& e : entries) {
      if (e.begin != cursor) return false;
      cursor = e.end;
    }
    return cursor == data_bytes;
  }
  std::vector<Range> ranges;
  ranges.reserve(entries.size());
  for (const Entry& e : entries) ranges.emplace_back(e.begin, e.end);
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

// The text read as Reader::read reads it, the second half of a large one on another thread: the
// entries and dimensions in `reader`, in the text's order.
bool read_text(Reader& reader, Header& header, std::string_view text, std::size_t split_from) {
  const std::size_t split = text.size() >= split_from ? split_point(text) : std::string_view::npos;
  if (split == std::string_view::npos) {
    reserve_entries(reader, text.size());
    return reader.read(header);
  }
  Reader rest(text, split);
  Header rest_header;
  bool rest_ok = false;
  std::thread other([&] {
    reserve_entries(rest, text.size() - split);
    rest_ok = rest.read_rest(rest_header);
  });
  reserve_entries(reader, text.size());  // room for the rest's entries too
  const bool ok = reader.read(header, split);
  other.join();
  if (!ok) return false;
  if (!reader.stopped) return true;  // no member begins at the split: read whole by this reader
  if (!rest_ok || (reader.has_metadata && rest.has_metadata)) return false;
  if (rest.has_metadata) header.metadata = std::move(rest_header.metadata);
  const auto dims_at = static_cast<std::uint32_t>(reader.dims.size());
  reader.dims.insert(reader.dims.end(), rest.dims.begin(), rest.dims.end());
  for (Entry e : rest.entries) {
    e.dims_at += dims_at;
    reader.entries.push_back(e);
  }
  return true;
}

}  // namespace

std::optional<Header> read_header_fast(std::string_view text, std::uint64_t data_bytes,
                                       std::size_t split_from) {
  if (text.size() > UINT32_MAX) return std::nullopt;  // offsets are kept in 32 bits
  Header header;
  Reader reader(text);
  if (!read_text(reader, header, text, split_from) || !sizes_agree(reader) ||
      !tiles(reader.entries, data_bytes))
    return std::nullopt;

  HugeVector<std::uint32_t> order(reader.entries.size());  // entries by name
  for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  sort_runs(order, [&](std::uint32_t a, std::uint32_t b) {
    return reader.name(reader.entries[a]) < reader.name(reader.entries[b]);
  });
  for (std::size_t i = 1; i < order.size(); ++i) {  // the full path names the duplicate
    if (reader.name(reader.entries[order[i - 1]]) == reader.name(reader.entries[order[i]]))
      return std::nullopt;
  }

  header.tensors.reserve(order.size());  // 16 MB at Pro's count
  for (const std::uint32_t i : order) {
    const Entry& e = reader.entries[i];
    const auto shape = reader.shape(e);
    header.tensors.push_back(TensorInfo{reader.name(e), e.dtype, SmallShape(shape), e.begin, e.end});
  }
  return header;
}

}  // namespace shardwise::st::detail
