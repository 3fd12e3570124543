#pragma once
// Test-side helpers for the convert tests: raw safetensors bytes built and parsed here, with code
// independent of the library's reader and writer, and source slicing done the simple way (visit
// every source element, keep those inside the slice). Header-only: the tests' glob compiles only
// *_test.cpp files.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <cstring>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <shardwise/core/numeric.hpp>

namespace shardwise::test {

struct RawTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", ...
  std::vector<std::uint64_t> shape;
  std::string bytes;
};

struct ParsedTensor {
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::string bytes;
};

// build_safetensors: length prefix, JSON header (tensors in the given order), data.
// parse_safetensors: checks that the data is tightly packed, fails the test otherwise.
// slice_bytes: the bytes of `source` restricted to [begin, end) on `dim`, element by element.
// pattern_bytes: `count` pseudo-random bytes from `seed`.

inline std::string build_safetensors(const std::vector<RawTensor>& tensors) {
  std::string header = "{";
  std::string data;
  for (const RawTensor& t : tensors) {
    if (header.size() > 1) header += ",";
    header += nlohmann::json(t.name).dump() + ":{\"dtype\":\"" + t.dtype +
              "\",\"shape\":" + nlohmann::json(t.shape).dump() + ",\"data_offsets\":[" +
              std::to_string(data.size()) + "," + std::to_string(data.size() + t.bytes.size()) + "]}";
    data += t.bytes;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::string prefix(8, '\0');
  for (std::size_t i = 0; i < 8; ++i) prefix[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return prefix + header + data;
}

inline std::map<std::string, ParsedTensor> parse_safetensors(const std::string& file) {
  REQUIRE(file.size() >= 8);
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < 8; ++i) n |= std::uint64_t{static_cast<unsigned char>(file[i])} << (8 * i);
  REQUIRE(8 + n <= file.size());
  const auto header = nlohmann::json::parse(file.substr(8, n));
  std::map<std::string, ParsedTensor> tensors;
  std::uint64_t covered = 0;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    const auto begin = entry.at("data_offsets")[0].get<std::uint64_t>();
    const auto end = entry.at("data_offsets")[1].get<std::uint64_t>();
    REQUIRE(begin <= end);
    REQUIRE(8 + n + end <= file.size());
    covered += end - begin;
    tensors[name] = {entry.at("dtype").get<std::string>(),
                     entry.at("shape").get<std::vector<std::uint64_t>>(),
                     file.substr(8 + n + begin, end - begin)};
  }
  REQUIRE(8 + n + covered == file.size());
  return tensors;
}

inline std::string slice_bytes(const std::string& source, const std::vector<std::uint64_t>& shape,
                               std::size_t element_size, std::size_t dim, std::uint64_t begin,
                               std::uint64_t end) {
  std::uint64_t count = 1;
  for (auto d : shape) count *= d;
  std::string out;
  std::vector<std::uint64_t> index(shape.size(), 0);
  for (std::uint64_t flat = 0; flat < count; ++flat) {
    // Decompose the flat index into a multi-index (row-major).
    std::uint64_t rest = flat;
    for (std::size_t d = shape.size(); d-- > 0;) {
      index[d] = rest % shape[d];
      rest /= shape[d];
    }
    if (index[dim] >= begin && index[dim] < end) out += source.substr(flat * element_size, element_size);
  }
  return out;
}

inline std::string cast_f16_to_bf16(const std::string& bytes) {
  std::string out(bytes.size(), '\0');
  for (std::size_t i = 0; i + 1 < bytes.size(); i += 2) {
    std::uint16_t h = 0;
    std::memcpy(&h, bytes.data() + i, 2);
    const std::uint16_t b = fp16_to_bf16(h);
    std::memcpy(out.data() + i, &b, 2);
  }
  return out;
}

inline std::string cast_f32_to_bf16(const std::string& bytes) {
  std::string out(bytes.size() / 2, '\0');
  for (std::size_t i = 0; i + 3 < bytes.size(); i += 4) {
    std::uint32_t f = 0;
    std::memcpy(&f, bytes.data() + i, 4);
    const std::uint16_t b = fp32_to_bf16(f);
    std::memcpy(out.data() + i / 2, &b, 2);
  }
  return out;
}

inline std::string pattern_bytes(std::size_t count, std::uint32_t seed) {
  std::string out(count, '\0');
  std::uint32_t state = seed * 2654435761u + 1;
  for (char& c : out) {
    state = state * 1664525u + 1013904223u;
    c = static_cast<char>(state >> 24);
  }
  return out;
}

}  // namespace shardwise::test

#include <shardwise/plan/plan.hpp>
#include <shardwise/safetensors/dtype.hpp>

#include "support/support.hpp"

namespace shardwise::test {

// Writes `tensors` as the safetensors file `path` and adds it to `plan` (input_files, sources in
// the given order, with their absolute offsets). Returns the index of the first source added.
inline std::size_t add_input_file(plan::Plan& plan, const std::filesystem::path& path,
                                  const std::vector<RawTensor>& tensors) {
  const std::string file = build_safetensors(tensors);
  write_file(path, file);
  std::uint64_t offset = 8;
  for (std::size_t i = 0; i < 8; ++i) offset += std::uint64_t{static_cast<unsigned char>(file[i])} << (8 * i);
  const std::size_t first = plan.sources.size();
  plan.input_files.push_back(std::filesystem::absolute(path).string());
  for (const RawTensor& t : tensors) {
    plan.sources.push_back(
        {plan.input_files.size() - 1, t.name, *st::parse_dtype(t.dtype), t.shape, offset, t.bytes.size()});
    offset += t.bytes.size();
    plan.input_bytes += t.bytes.size();
  }
  return first;
}

// A planned tensor taking `slice` of `source` (cast or not), with its output shape and bytes
// computed here.
inline plan::PlannedTensor planned(const plan::Plan& plan, std::string name, std::size_t source,
                                   plan::Slice slice, plan::Cast cast = plan::Cast::none) {
  const plan::Source& src = plan.sources[source];
  plan::PlannedTensor t;
  t.name = std::move(name);
  t.source = static_cast<std::uint32_t>(source);
  t.slice = slice;
  t.cast = cast;
  t.dtype = cast == plan::Cast::none ? src.dtype : st::DType::BF16;
  t.shape = src.shape;
  if (!slice.whole()) t.shape[static_cast<std::size_t>(slice.dim)] = slice.end - slice.begin;
  t.bytes = *st::byte_size(t.dtype, t.shape);
  return t;
}

}  // namespace shardwise::test
