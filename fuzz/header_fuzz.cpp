// libFuzzer target for the safetensors header parser. Arbitrary bytes must never crash, hang,
// leak or trip a sanitizer; a rejection (shardwise::Error) is the normal outcome. When a header is
// accepted, the guarantees the rest of the program relies on are checked, and a violation traps.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/header.hpp>

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

// The input as a whole file: length prefix, header, data (what File::open does, minus the OS).
void parse_file(std::string_view bytes) {
  if (bytes.size() < 8) return;
  std::array<std::byte, 8> prefix{};
  std::memcpy(prefix.data(), bytes.data(), 8);
  const std::uint64_t n = read_header_length(prefix, bytes.size(), "fuzz.safetensors");
  const Header header =
      parse_header(bytes.substr(8, static_cast<std::size_t>(n)), bytes.size(), "fuzz.safetensors");
  check_promises(header, bytes.size());
}

}  // namespace

// The first byte picks the mode: odd parses the rest as a whole file; even parses the rest as the
// header text of a file with (first byte / 2) bytes of data, so mutations of the JSON need not
// keep a length prefix in step.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] & 1) {
      parse_file(rest);
    } else {
      const std::uint64_t file_size = 8 + rest.size() + data[0] / 2;
      check_promises(parse_header(rest, file_size, "fuzz.safetensors"), file_size);
    }
  } catch (const shardwise::Error&) {
  }
  return 0;
}
