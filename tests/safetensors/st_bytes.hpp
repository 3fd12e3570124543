#pragma once
// Hand-built safetensors bytes for the reader's tests (independent of the writer on purpose).

#include <cstdint>
#include <string>

namespace shardwise::test {

// The 8-byte little-endian length prefix.
inline std::string le64(std::uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out;
}

// One header entry: "name":{"dtype":..,"shape":..,"data_offsets":[begin,end]}.
inline std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                         std::uint64_t begin, std::uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

// A whole file: prefix, the JSON as given, then `data` (or `data_bytes` bytes of a running pattern).
inline std::string st_file(const std::string& json, const std::string& data) {
  return le64(json.size()) + json + data;
}
inline std::string st_file(const std::string& json, std::size_t data_bytes) {
  std::string data(data_bytes, '\0');
  for (std::size_t i = 0; i < data_bytes; ++i) data[i] = static_cast<char>(i & 0xFF);
  return st_file(json, data);
}

}  // namespace shardwise::test
