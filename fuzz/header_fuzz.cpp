// libFuzzer target for the safetensors header parser and the index reader. Arbitrary bytes must
// never crash, hang, leak or trip a sanitizer; a rejection (shardwise::Error) is the normal
// outcome. When a header is accepted, the guarantees the rest of the program relies on are
// checked, and a violation traps. Both readers have a fast path in front of the full one: their
// outcomes (the result, or the exact message) must be those of the full path alone.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/safetensors/header.hpp>

#include "safetensors/header_fast.hpp"
#include "safetensors/index.hpp"

namespace {

using namespace shardwise::st;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

// What an accepted header promises: tensors sorted by unique name, each of exactly its byte size,
// together tiling the data buffer [0, file_size - data_start) without gaps or overlaps.
void check_promises(const Header& header, std::uint64_t file_size) {
  require(header.data_start == 8 + header.header_bytes && header.data_start <= file_size);
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < header.tensors.size(); ++i) {
    const TensorInfo& t = header.tensors[i];
    if (i > 0) require(header.tensors[i - 1].name < t.name);
    require(t.begin <= t.end && t.end <= file_size - header.data_start);
    require(byte_size(t.dtype, t.shape) == t.bytes());
    require(header.find(t.name) == &t);
    covered += t.bytes();
  }
  require(covered == file_size - header.data_start);
}

bool same(const Header& a, const Header& b) {
  if (a.header_bytes != b.header_bytes || a.data_start != b.data_start || a.metadata != b.metadata ||
      a.tensors.size() != b.tensors.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    const TensorInfo &x = a.tensors[i], &y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.begin != y.begin || x.end != y.end)
      return false;
  }
  return true;
}

// A WeightMap's content: (tensor, file) in its order, then its files.
using Mapping = std::pair<std::vector<std::pair<std::string, std::string>>, std::vector<std::string>>;
Mapping content(const detail::WeightMap& map) {
  Mapping out;
  for (const auto& e : map.tensors) out.first.emplace_back(map.name(e), map.files.at(e.file));
  out.second = map.files;
  return out;
}

// What a parse came to: its result, or the message it threw.
template <class Result>
struct Outcome {
  std::optional<Result> result;
  std::string error;
};
template <class Result, class Parse>
Outcome<Result> outcome(Parse parse) {
  try {
    return {parse(), {}};
  } catch (const shardwise::Error& e) {
    return {std::nullopt, e.what()};
  }
}

// parse_header (fast path first) must come to what the full path alone comes to.
void parse_header_text(std::string_view text, std::uint64_t file_size) {
  const auto chosen = outcome<Header>([&] { return parse_header(text, file_size, "fuzz.safetensors"); });
  const auto full =
      outcome<Header>([&] { return detail::parse_header_full(text, file_size, "fuzz.safetensors"); });
  require(chosen.result.has_value() == full.result.has_value() && chosen.error == full.error);
  if (chosen.result) {
    require(same(*chosen.result, *full.result));
    check_promises(*chosen.result, file_size);
  }
  // The fast path in two parts (as it reads a header of 4 MiB or more) comes to what it comes to in one.
  if (file_size >= 8 + text.size()) {
    const std::uint64_t data_bytes = file_size - 8 - text.size();
    const auto whole = detail::read_header_fast(text, data_bytes, SIZE_MAX);
    const auto split = detail::read_header_fast(text, data_bytes, 0);
    require(whole.has_value() == split.has_value() && (!whole || same(*whole, *split)));
  }
}

// The input as a whole file: length prefix, header, data (what File::open does, minus the OS).
void parse_file(std::string_view bytes) {
  if (bytes.size() < 8) return;
  std::array<std::byte, 8> prefix{};
  std::memcpy(prefix.data(), bytes.data(), 8);
  try {
    const std::uint64_t n = read_header_length(prefix, bytes.size(), "fuzz.safetensors");
    parse_header_text(bytes.substr(8, static_cast<std::size_t>(n)), bytes.size());
  } catch (const shardwise::Error&) {
  }
}

// The same bytes read as model.safetensors.index.json: both paths must agree.
void parse_index_text(std::string_view text) {
  using detail::WeightMap;
  const std::string where = "model.safetensors.index.json";
  const auto chosen = outcome<WeightMap>([&] { return detail::parse_index(std::string(text), where); });
  const auto full = outcome<WeightMap>([&] { return detail::parse_index_full(std::string(text), where); });
  require(chosen.result.has_value() == full.result.has_value() && chosen.error == full.error);
  if (!chosen.result) return;
  require(content(*chosen.result) == content(*full.result));
  // Every file an accepted index names is opened in the checkpoint's folder: one name, no path.
  for (const std::string& file : chosen.result->files) require(shardwise::is_single_file_name(file));
}

}  // namespace

// The first byte picks the mode: odd parses the rest as a whole file; even parses the rest as the
// header text of a file with (first byte / 2) bytes of data, so mutations of the JSON need not
// keep a length prefix in step, and also as the text of an index.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1) {
    parse_file(rest);
  } else {
    parse_header_text(rest, 8 + rest.size() + data[0] / 2);
    parse_index_text(rest);
  }
  return 0;
}
