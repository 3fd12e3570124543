// XXH3-64 digests, one-shot and streamed in uneven pieces, against digests pinned from xxHash's
// portable scalar code (XXH_VECTOR=XXH_SCALAR, XXH_INLINE_ALL): whichever vector unit the library
// picks at run time, the manifest's digests must not change.
#include <shardwise/output/checksum.hpp>

#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

namespace shardwise::test {
namespace {

// Byte i of the test input: (i * 131 + 7) ^ (i >> 8), truncated to 8 bits.
std::vector<std::byte> pattern(std::size_t size) {
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(((i * 131 + 7) ^ (i >> 8)) & 0xff);
  return bytes;
}

struct Pinned {
  std::size_t size;
  std::uint64_t digest;
};

// Sizes around XXH3's internal boundaries (short inputs, 128, 240, its 1 KiB stripes and 4 KiB
// blocks) and one long input; digests computed outside shardwise with the scalar code.
constexpr Pinned kPinned[] = {
    {0, 0x2d06800538d394c2u},     {1, 0x4c5cca45d0f4811fu},       {3, 0x6e3e2670e61106acu},
    {4, 0x5c4c63133443d03fu},     {8, 0xf9fd4dd0b04d78f5u},       {9, 0x7c20df9712c26edfu},
    {16, 0x86abf6baccea0858u},    {17, 0xb58bf5dc5022d071u},      {128, 0x10d17f72c0ccba41u},
    {129, 0x1648bdc3db49d1a2u},   {240, 0xb6cfaf343fab81e6u},     {241, 0x956cae592c67279eu},
    {1024, 0x9fb9947417c15b80u},  {1025, 0xfe1b47100b1d79d8u},    {4096, 0x0daed5401db51994u},
    {65537, 0x2a159d9c31958038u}, {1048579, 0xd9bcc5ab06165cd5u},
};

TEST_CASE("xxh3 of a span matches the pinned portable digests") {
  const std::vector<std::byte> bytes = pattern(1048579);
  for (const Pinned& p : kPinned) {
    INFO("size " << p.size);
    CHECK(output::xxh3(std::span(bytes).first(p.size)) == p.digest);
  }
}

TEST_CASE("Hasher fed in uneven pieces matches the pinned portable digests") {
  const std::vector<std::byte> bytes = pattern(1048579);
  // Piece sizes that straddle the stripe and block boundaries in different places.
  for (const std::size_t piece :
       {std::size_t{1}, std::size_t{7}, std::size_t{255}, std::size_t{4097}, std::size_t{65536}}) {
    for (const Pinned& p : kPinned) {
      if (piece == 1 && p.size > 65537) continue;  // a million one-byte updates add nothing
      INFO("size " << p.size << ", pieces of " << piece);
      output::Hasher hasher;
      for (std::size_t at = 0; at < p.size; at += piece) {
        hasher.update(std::span(bytes).subspan(at, std::min(piece, p.size - at)));
      }
      CHECK(hasher.digest() == p.digest);
    }
  }
}

TEST_CASE("Hasher::reset starts a new digest") {
  const std::vector<std::byte> bytes = pattern(4096);
  output::Hasher hasher;
  hasher.update(std::span(bytes).first(100));
  hasher.reset();
  hasher.update(std::span(bytes));
  CHECK(hasher.digest() == 0x0daed5401db51994u);
}

}  // namespace
}  // namespace shardwise::test
