#pragma once
// Deterministic tensor contents for synthetic checkpoints: a xoshiro256** stream per tensor, seeded
// from (--seed, the tensor's inference-style name), so the bytes of a tensor do not depend on the
// naming style, the file it lands in or the order tensors are written.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "deepseek_v4_inventory.hpp"

namespace gen {

class Rng {
 public:
  Rng(std::uint64_t seed, std::string_view name) {
    std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a of the name, mixed with the seed
    for (char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ULL;
    std::uint64_t sm = seed ^ h;
    for (auto& word : s_) word = splitmix64(sm);
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::array<std::uint64_t, 4> s_{};
};

// fp16 bit patterns the fp16 -> bf16 cast must get exactly right: NaNs (several payloads, both
// signs, quiet and signalling), infinities, signed zeros, subnormals, and ties of the rounding
// (3 dropped bits 100: kept lsb even stays, odd rounds up; also a tie carrying into the exponent
// and ties among subnormals, which lose fewer bits).
inline constexpr std::array<std::uint16_t, 30> kSpecialScales = {
    0x7E00, 0xFE00, 0x7C01, 0xFC01, 0x7FFF, 0xFFFF, 0x7D55, 0xFEAA,  // NaN
    0x7C00, 0xFC00,                                                  // +-inf
    0x0000, 0x8000,                                                  // +-0
    0x0001, 0x8001, 0x03FF, 0x83FF, 0x0200, 0x0155,                  // subnormals
    0x3C04, 0xBC04, 0x1404,                                          // ties, even: round down
    0x3C0C, 0xBC0C, 0x140C, 0x7BFC,                                  // ties, odd: round up (0x7BFC carries)
    0x0181, 0x8181,                                                  // subnormal tie, even
    0x0183, 0x8183, 0x02FF,                                          // subnormal tie, odd; and round up
};

struct FillOptions {
  std::uint64_t seed = 0;
  std::uint64_t experts = 1;              // tid2eid values are < experts
  bool special_scales = false;            // about one scale in four is taken from kSpecialScales
  std::uint64_t group_size = kGroupSize;  // g_idx values are < in / group_size
};

// Fills `out` (whole elements of the tensor's dtype) with the next values of a tensor's stream.
class TensorFiller {
 public:
  TensorFiller(const TensorSpec& spec, const FillOptions& options)
      : fill_(spec.fill),
        dtype_(spec.dtype),
        options_(options),
        rng_(options.seed, spec.seed_name),
        groups_(spec.fill == Fill::g_idx && !spec.shape.empty() && options.group_size != 0
                    ? std::max<std::uint64_t>(1, spec.shape[0] / options.group_size)
                    : 1) {}

  void fill(std::span<std::byte> out) {
    switch (fill_) {
      case Fill::qweight:
        return words(out);
      case Fill::qzeros:
        return constant32(out, 0x77777777U);  // zero - 1 = 7: symmetric 4-bit
      case Fill::scales:
        return scales(out);
      case Fill::bf16:
        return bf16(out);
      case Fill::f32:
        return f32(out);
      case Fill::tid2eid:
        return expert_ids(out);
      case Fill::g_idx:
        return group_indices(out);
    }
  }

 private:
  template <typename T>
  static void put(std::span<std::byte> out, std::size_t index, T value) {
    std::memcpy(out.data() + index * sizeof(T), &value, sizeof(T));  // little-endian host
  }

  void words(std::span<std::byte> out) {
    std::size_t i = 0;
    for (; i + 8 <= out.size(); i += 8) put(out, i / 8, rng_.next());
    if (i < out.size()) put(out, i / 4, static_cast<std::uint32_t>(rng_.next()));
  }

  static void constant32(std::span<std::byte> out, std::uint32_t value) {
    for (std::size_t i = 0; i < out.size() / 4; ++i) put(out, i, value);
  }

  // Positive finite normals around 2^-10..2^-6 (realistic scales); random low mantissa bits make
  // about one in eight a rounding tie of the bf16 cast anyway. F32 scales hold the same values
  // (fp16 widened exactly: NaN payloads, ties and subnormals stay what they were).
  void scales(std::span<std::byte> out) {
    const bool f32 = dtype_ == DType::F32;
    for (std::size_t i = 0; i < out.size() / (f32 ? 4 : 2); ++i) {
      const std::uint64_t r = rng_.next();
      auto bits = static_cast<std::uint16_t>(0x1400 + (r & 0x0FFF));
      if (options_.special_scales && ((r >> 16) & 3) == 0) {
        bits = kSpecialScales[(r >> 20) % kSpecialScales.size()];
      }
      if (f32) {
        put(out, i, fp16_bits_to_f32_bits(bits));
      } else {
        put(out, i, bits);
      }
    }
  }

  // Exact fp16 -> fp32 widening, by fields (a NaN keeps its sign and payload, shifted).
  static std::uint32_t fp16_bits_to_f32_bits(std::uint16_t half) {
    const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000u) << 16;
    const std::uint32_t exponent = (half >> 10) & 0x1Fu;
    std::uint32_t mantissa = half & 0x3FFu;
    if (exponent == 0x1F) return sign | 0x7F800000u | (mantissa << 13);
    if (exponent != 0) return sign | ((exponent + 112) << 23) | (mantissa << 13);
    if (mantissa == 0) return sign;
    std::uint32_t biased = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --biased;
    }
    return sign | (biased << 23) | ((mantissa & 0x3FFu) << 13);
  }

  // Finite values of either sign with magnitude in [1/8, 2).
  void bf16(std::span<std::byte> out) {
    for (std::size_t i = 0; i < out.size() / 2; ++i) {
      const std::uint64_t r = rng_.next();
      put(out, i, static_cast<std::uint16_t>(0x3E00 + (r & 0x1FF) + ((r >> 9) & 1) * 0x8000));
    }
  }

  // Uniform in [-1, 1).
  void f32(std::span<std::byte> out) {
    for (std::size_t i = 0; i < out.size() / 4; ++i) {
      const auto r = static_cast<std::int32_t>(static_cast<std::uint32_t>(rng_.next() >> 32));
      put(out, i, static_cast<float>(r) * 0x1p-31f);
    }
  }

  void expert_ids(std::span<std::byte> out) {
    for (std::size_t i = 0; i < out.size() / 8; ++i) {
      put(out, i, static_cast<std::int64_t>(rng_.next() % options_.experts));
    }
  }

  // Act-order: each input channel's quantisation group, in any order (channels are permuted).
  void group_indices(std::span<std::byte> out) {
    for (std::size_t i = 0; i < out.size() / 4; ++i)
      put(out, i, static_cast<std::int32_t>(rng_.next() % groups_));
  }

  Fill fill_;
  DType dtype_;
  const FillOptions& options_;
  Rng rng_;
  std::uint64_t groups_;  // g_idx: in / group_size
};

}  // namespace gen
