#pragma once
// Deterministic contents for the official-format checkpoints (official_inventory.hpp): a stream
// per tensor seeded from (--seed, name), with the special codes the numeric transforms must get
// right placed in every tensor: FP8 weights take every E4M3 code (NaN and -0 included); block
// scales are mostly usual values with some NaN, infinite, zero, subnormal (F32) or 0x00, 0xFF,
// <= 5 and 254 (E8M0); FP4 scales vary per 128 x 128 block between usual, tiny (every code <= 5),
// NaN (one 0xFF) and wide (0..254) blocks; FP4 bytes take every pair of codes.

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "checkpoint_data.hpp"
#include "official_inventory.hpp"

namespace gen::official {

inline constexpr std::array<std::uint32_t, 10> kSpecialScaleInv = {
    0x7FC00000, 0xFFC00000, 0x7F800001,  // NaN: quiet, negative, signalling
    0x7F800000,                          // +inf
    0x00000000, 0x80000000,              // +-0
    0x00000001, 0x00400000,              // subnormals
    0x7F7FFFFF,                          // the largest float: products overflow to infinity
    0xBB800000,                          // negative, -2^-8
};
inline constexpr std::array<std::uint8_t, 6> kSpecialBlockScales = {0x00, 0xFF, 0x01, 0x05, 0xFE, 0x80};

// Fills a whole tensor (its bytes, little-endian) from `seed` and its name.
inline std::vector<std::byte> tensor_data(const Tensor& t, std::uint64_t seed, std::uint64_t experts) {
  Rng rng(seed, t.name);
  const std::uint64_t bytes = *shardwise::st::byte_size(t.dtype, t.shape);
  std::vector<std::byte> out(bytes);
  const auto put = [&](std::size_t index, auto value) {
    std::memcpy(out.data() + index * sizeof(value), &value, sizeof(value));
  };
  switch (t.fill) {
    case Fill::e4m3:
    case Fill::fp4:
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = std::byte(rng.next() & 0xFF);
      break;
    case Fill::scale_inv:
      for (std::size_t i = 0; i < out.size() / 4; ++i) {
        const std::uint64_t r = rng.next();
        // 2^-12 .. 2^-6 with random mantissa; one in eight special.
        auto bits = static_cast<std::uint32_t>(((115u + (r & 7)) << 23) | ((r >> 8) & 0x7FFFFF));
        if (((r >> 40) & 7) == 0) bits = kSpecialScaleInv[(r >> 44) % kSpecialScaleInv.size()];
        put(i, bits);
      }
      break;
    case Fill::e8m0_blocks:
      for (std::size_t i = 0; i < out.size(); ++i) {
        const std::uint64_t r = rng.next();
        auto code = static_cast<std::uint8_t>(112 + (r & 15));
        if (((r >> 8) & 7) == 0) code = kSpecialBlockScales[(r >> 12) % kSpecialBlockScales.size()];
        out[i] = std::byte(code);
      }
      break;
    case Fill::e8m0_groups: {
      // [out, in/32]: one kind per 128 rows x 4 groups, chosen from the block's own draw.
      const std::uint64_t rows = t.shape[0], groups = t.shape[1];
      std::vector<std::uint8_t> kinds((rows + 127) / 128 * ((groups + 3) / 4));
      for (auto& k : kinds) k = static_cast<std::uint8_t>(rng.next() % 4);
      for (std::uint64_t r = 0; r < rows; ++r) {
        for (std::uint64_t g = 0; g < groups; ++g) {
          const std::uint64_t draw = rng.next();
          const std::uint8_t kind = kinds[(r / 128) * ((groups + 3) / 4) + g / 4];
          std::uint8_t code = static_cast<std::uint8_t>(118 + draw % 8);  // usual
          if (kind == 1) code = static_cast<std::uint8_t>(draw % 6);      // tiny: <= 5
          if (kind == 2 && draw % 64 == 0) code = 0xFF;                   // NaN in the block
          if (kind == 3) code = static_cast<std::uint8_t>(draw % 255);    // wide: 0..254
          out[r * groups + g] = std::byte(code);
        }
      }
      // Every NaN-kind block gets at least one NaN: its first row's first group.
      for (std::uint64_t b = 0; b < kinds.size(); ++b) {
        if (kinds[b] == 2)
          out[(b / ((groups + 3) / 4)) * 128 * groups + (b % ((groups + 3) / 4)) * 4] = std::byte{0xFF};
      }
      break;
    }
    case Fill::bf16:
      for (std::size_t i = 0; i < out.size() / 2; ++i) {
        const std::uint64_t r = rng.next();
        put(i, static_cast<std::uint16_t>(0x3E00 + (r & 0x1FF) + ((r >> 9) & 1) * 0x8000));
      }
      break;
    case Fill::f32:
      for (std::size_t i = 0; i < out.size() / 4; ++i) {
        const auto r = static_cast<std::int32_t>(static_cast<std::uint32_t>(rng.next() >> 32));
        put(i, static_cast<float>(r) * 0x1p-31f);
      }
      break;
    case Fill::tid2eid:
      for (std::size_t i = 0; i < out.size() / 8; ++i)
        put(i, static_cast<std::int64_t>(rng.next() % experts));
      break;
  }
  return out;
}

}  // namespace gen::official
