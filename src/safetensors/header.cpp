#include <shardwise/safetensors/header.hpp>

#include <algorithm>
#include <cstring>
#include <tuple>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>

#include <shardwise/safetensors/utf8.hpp>
#include "safetensors/header_fast.hpp"
#include "safetensors/header_json.hpp"

namespace shardwise::st {

namespace {

using detail::quote_name;

[[noreturn]] void refuse(const std::string& file, const std::string& message) {
  throw Error(ErrorKind::input, fmt::format("{}: {}", file, message));
}

// The text must be UTF-8 and hold no NUL byte (the JSON library would take a NUL for the end of
// the input and ignore whatever follows it).
void check_text(std::string_view text, const std::string& file) {
  if (const std::size_t i = detail::first_bad_byte(text, detail::kSplitFrom); i != std::string_view::npos) {
    if (text[i] == '\0') refuse(file, fmt::format("header holds a NUL byte at offset {}", 8 + i));
    refuse(file, fmt::format("header is not valid UTF-8 (byte 0x{:02x} at offset {})",
                             static_cast<unsigned char>(text[i]), 8 + i));
  }
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) refuse(file, "header is empty");
  if (text[first] != '{') {
    refuse(file, fmt::format("header is not a JSON object (it starts with {})",
                             quote_name(text.substr(first, detail::utf8_sequence(text, first)))));
  }
}

// Gives one entry its meaning: a known dtype, an element count and byte size that fit in 64 bits,
// and data_offsets that hold exactly those bytes.
// The message prefix is built only on failure: this runs once per tensor of every file.
TensorInfo check_entry(detail::RawEntry& raw, const std::string& file) {
  const auto tensor = [&raw] { return "tensor " + quote_name(raw.name); };
  auto dtype = parse_dtype(raw.dtype);
  if (!dtype) refuse(file, fmt::format("{}: unknown dtype {}", tensor(), quote_name(raw.dtype)));
  if (!element_count(raw.shape)) {
    refuse(file,
           fmt::format("{}: element count of shape {} overflows 64 bits", tensor(), shape_text(raw.shape)));
  }
  auto bytes = byte_size(*dtype, raw.shape);
  if (!bytes) {
    const unsigned bits = dtype_bits(*dtype);
    const std::uint64_t count = *element_count(raw.shape);
    if (bits % 8 != 0 && (count % 8) * bits % 8 != 0) {
      refuse(file, fmt::format("{}: {} {} has {} elements of {} bits, which do not end on a byte boundary",
                               tensor(), raw.dtype, shape_text(raw.shape), count, bits));
    }
    refuse(file, fmt::format("{}: byte size of {} {} overflows 64 bits", tensor(), raw.dtype,
                             shape_text(raw.shape)));
  }
  if (raw.data_offsets.size() != 2) {
    refuse(file,
           fmt::format("{}: data_offsets must hold 2 integers, not {}", tensor(), raw.data_offsets.size()));
  }
  const std::uint64_t begin = raw.data_offsets[0], end = raw.data_offsets[1];
  if (begin > end)
    refuse(file, fmt::format("{}: data_offsets [{}, {}] end before they begin", tensor(), begin, end));
  if (end - begin != *bytes) {
    refuse(file, fmt::format("{}: data_offsets [{}, {}] hold {} bytes but {} {} needs {}", tensor(), begin,
                             end, end - begin, raw.dtype, shape_text(raw.shape), *bytes));
  }
  return TensorInfo{raw.name, *dtype, SmallShape(raw.shape), begin, end};  // the name views `raw`
}

// The tensors, taken in data order, must tile the data buffer exactly: the first begins at 0,
// each begins where the previous ends, the last ends at the end of the file.
void check_layout(HugeVector<TensorInfo>& tensors, std::uint64_t data_bytes, const std::string& file) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::uint64_t cursor = 0;
  const TensorInfo* previous = nullptr;
  for (const auto& t : tensors) {
    if (t.begin != cursor) {
      const std::string after =
          previous ? fmt::format("the previous tensor {} ends at {}", quote_name(previous->name), cursor)
                   : std::string("the data starts at 0");
      refuse(file, fmt::format("tensor {}: data begins at {} but {} ({} of {} bytes)", quote_name(t.name),
                               t.begin, after, t.begin > cursor ? "a gap" : "an overlap",
                               t.begin > cursor ? t.begin - cursor : cursor - t.begin));
    }
    cursor = t.end;
    previous = &t;
  }
  if (cursor > data_bytes) {
    refuse(file,
           fmt::format("tensor {}: data ends at {} but the file holds only {} bytes of data (truncated?)",
                       quote_name(previous->name), cursor, data_bytes));
  }
  if (cursor < data_bytes) {
    refuse(file,
           fmt::format("the tensors' data ends at {} but the file holds {} bytes of data ({} trailing bytes)",
                       cursor, data_bytes, data_bytes - cursor));
  }
}

// Copies the tensors' names, which view the entries the full path read, into one block the header
// owns (in the tensors' order, each followed by a NUL) and points them there.
void keep_names(Header& header) {
  std::size_t total = 0;
  for (const auto& t : header.tensors) total += t.name.size() + 1;
  if (total == 0) return;
  std::shared_ptr<char[]> block(allocate_array(total), HugeFree());
  char* next = block.get();
  for (auto& t : header.tensors) {
    std::memcpy(next, t.name.data(), t.name.size());
    next[t.name.size()] = '\0';
    t.name = std::string_view(next, t.name.size());
    next += t.name.size() + 1;
  }
  header.names = std::move(block);
}

// Which readers parse_header may use: the fast path first (declining to the full one), or the
// full one alone.
enum class Readers { fast_first, full_only };

Header parse(std::string_view json_text, std::uint64_t file_size, const std::string& file, Readers readers) {
  Header header;
  header.header_bytes = json_text.size();
  if (header.header_bytes > kMaxHeaderBytes) {
    refuse(file, fmt::format("header length {} exceeds the limit of {} bytes", header.header_bytes,
                             kMaxHeaderBytes));
  }
  header.data_start = 8 + header.header_bytes;
  if (header.data_start > file_size) {
    refuse(file, fmt::format("header length {} runs past the end of the file ({} > {} bytes)",
                             header.header_bytes, header.data_start, file_size));
  }
  check_text(json_text, file);
  if (readers == Readers::fast_first) {
    if (auto fast = detail::read_header_fast(json_text, file_size - header.data_start)) {
      fast->header_bytes = header.header_bytes;
      fast->data_start = header.data_start;
      return std::move(*fast);
    }
  }
  detail::RawHeader raw = detail::read_header_json(json_text, file);
  header.metadata = std::move(raw.metadata);
  header.tensors.reserve(raw.entries.size());
  for (auto& entry : raw.entries) header.tensors.push_back(check_entry(entry, file));
  check_layout(header.tensors, file_size - header.data_start, file);
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  keep_names(header);
  return header;
}

}  // namespace

const TensorInfo* Header::find(std::string_view name) const {
  auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

Header parse_header(std::string_view json_text, std::uint64_t file_size, const std::string& file) {
  return parse(json_text, file_size, file, Readers::fast_first);
}

Header detail::parse_header_full(std::string_view json_text, std::uint64_t file_size,
                                 const std::string& file) {
  return parse(json_text, file_size, file, Readers::full_only);
}

std::uint64_t read_header_length(std::span<const std::byte, 8> prefix, std::uint64_t file_size,
                                 const std::string& file) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | std::to_integer<std::uint64_t>(prefix[static_cast<std::size_t>(i)]);
  if (n > kMaxHeaderBytes) {
    refuse(file, fmt::format("header length {} exceeds the limit of {} bytes", n, kMaxHeaderBytes));
  }
  if (8 + n > file_size) {
    refuse(file, fmt::format("header length {} runs past the end of the file ({} > {} bytes)", n, 8 + n,
                             file_size));
  }
  return n;
}

}  // namespace shardwise::st
