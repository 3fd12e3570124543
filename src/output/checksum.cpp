#include <shardwise/output/checksum.hpp>

#include <xxhash.h>
#if SHARDWISE_XXH3_DISPATCH
// Redefines XXH3_64bits and XXH3_64bits_update as their dispatching versions (the widest vector
// unit the CPU has, chosen at run time): same digests, a fraction of the CPU time.
#include <xxh_x86dispatch.h>
#endif

#include <algorithm>
#include <new>
#include <stdexcept>

#include <fmt/format.h>

#include <shardwise/core/io.hpp>

namespace shardwise::output {

struct Hasher::State {
  XXH3_state_t* xxh = nullptr;
  State() : xxh(XXH3_createState()) {
    if (xxh == nullptr) throw std::bad_alloc();
  }
  ~State() { XXH3_freeState(xxh); }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
};

Hasher::Hasher() : state_(std::make_unique<State>()) { reset(); }
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;

void Hasher::reset() { XXH3_64bits_reset(state_->xxh); }

void Hasher::update(std::span<const std::byte> bytes) {
  XXH3_64bits_update(state_->xxh, bytes.data(), bytes.size());
}

void Hasher::update(std::string_view text) { XXH3_64bits_update(state_->xxh, text.data(), text.size()); }

std::uint64_t Hasher::digest() const { return XXH3_64bits_digest(state_->xxh); }

std::uint64_t xxh3(std::span<const std::byte> bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }
std::uint64_t xxh3(std::string_view text) { return XXH3_64bits(text.data(), text.size()); }

std::string xxh3_hex(std::uint64_t digest) { return fmt::format("{:016x}", digest); }

std::optional<std::uint64_t> parse_xxh3_hex(std::string_view text) {
  if (text.size() != 16) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    unsigned digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    value = (value << 4) | digit;
  }
  return value;
}

std::uint64_t hash_file_range(int fd, const std::string& path, std::uint64_t offset, std::uint64_t bytes,
                              std::span<std::byte> buffer) {
  if (buffer.empty() && bytes > 0) throw std::invalid_argument("hash_file_range: empty buffer");
  Hasher hasher;
  std::uint64_t done = 0;
  while (done < bytes) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), bytes - done));
    io::pread_exact(fd, path, offset + done, buffer.first(n));
    hasher.update(buffer.first(n));
    done += n;
  }
  return hasher.digest();
}

}  // namespace shardwise::output
