// GPTQ (v1, v2; 2, 4 and 8 bits; act-order) and AWQ dequantisation against expectations computed in
// the test: the weight is written as logical codes, zeros and scales, packed here the way the
// writers pack it (AutoGPTQ/GPTQModel along in and out, GPTQModel's v1 as its v2 words minus
// 0x11..1, AutoAWQ's order_map), and each element expected from its definition,
// out(exact product of (q - z) and the scale, rounded to float32), with exact_formats.hpp's rounding.

#include <shardwise/core/error.hpp>
#include <shardwise/transform/dequantize_int.hpp>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "transform/exact_formats.hpp"

using namespace shardwise;
using namespace shardwise::transform;
namespace exact = shardwise::test::exact;

namespace {

// A quantised weight as its writer knows it, before packing.
struct Logical {
  IntPacking packing = IntPacking::gptq;
  unsigned bits = 4;
  std::uint64_t in = 0, out = 0, groups = 0, group_size = 0;
  std::vector<std::uint32_t> q;      // [in, out]
  std::vector<std::uint32_t> zero;   // [groups, out], the true zero points
  std::vector<std::uint16_t> scale;  // [groups, out], bits of scale_dtype (F16/BF16)
  std::vector<float> scale_f32;      // [groups, out] when scale_dtype is F32
  st::DType scale_dtype = st::DType::F16;
  std::vector<std::int32_t> g_idx;  // [in] or empty

  std::uint64_t group_of(std::uint64_t i) const {
    return g_idx.empty() ? i / group_size : static_cast<std::uint64_t>(g_idx[i]);
  }
  float scale_value(std::uint64_t g, std::uint64_t o) const {
    if (scale_dtype == st::DType::F32) return scale_f32[g * out + o];
    return scale_dtype == st::DType::F16 ? exact::f16_value(scale[g * out + o])
                                         : exact::bf16_value(scale[g * out + o]);
  }
  IntQuant quant() const { return {packing, bits, in, out, groups, group_size}; }
};

struct Packed {
  std::vector<std::byte> qweight, qzeros, scales, g_idx;
};

std::vector<std::byte> words_bytes(const std::vector<std::uint32_t>& words) {
  std::vector<std::byte> bytes(4 * words.size());
  std::memcpy(bytes.data(), words.data(), bytes.size());
  return bytes;
}

// AutoAWQ's from_linear: nibble j of word k holds column 8k + order_map[j].
constexpr unsigned kOrderMap[8] = {0, 2, 4, 6, 1, 3, 5, 7};

Packed pack(const Logical& w) {
  const unsigned per = 32 / w.bits;
  Packed p;
  if (w.packing == IntPacking::awq) {
    std::vector<std::uint32_t> qw(w.in * w.out / 8, 0), qz(w.groups * w.out / 8, 0);
    for (std::uint64_t r = 0; r < w.in; ++r)
      for (std::uint64_t k = 0; k < w.out / 8; ++k)
        for (unsigned j = 0; j < 8; ++j)
          qw[r * (w.out / 8) + k] |= w.q[r * w.out + 8 * k + kOrderMap[j]] << (4 * j);
    for (std::uint64_t g = 0; g < w.groups; ++g)
      for (std::uint64_t k = 0; k < w.out / 8; ++k)
        for (unsigned j = 0; j < 8; ++j)
          qz[g * (w.out / 8) + k] |= w.zero[g * w.out + 8 * k + kOrderMap[j]] << (4 * j);
    p.qweight = words_bytes(qw);
    p.qzeros = words_bytes(qz);
  } else {
    std::vector<std::uint32_t> qw(w.in / per * w.out, 0), qz(w.groups * w.out / per, 0);
    for (std::uint64_t i = 0; i < w.in; ++i)
      for (std::uint64_t o = 0; o < w.out; ++o)
        qw[(i / per) * w.out + o] |= w.q[i * w.out + o] << (w.bits * (i % per));
    for (std::uint64_t g = 0; g < w.groups; ++g)
      for (std::uint64_t o = 0; o < w.out; ++o)
        qz[g * (w.out / per) + o / per] |= w.zero[g * w.out + o] << (w.bits * (o % per));
    if (w.packing == IntPacking::gptq) {  // GPTQModel's convert_gptq_v2_to_v1: each word minus 0x11..1
      const std::uint32_t ones = w.bits == 2 ? 0x55555555u : w.bits == 4 ? 0x11111111u : 0x01010101u;
      for (auto& word : qz) word -= ones;
    }
    p.qweight = words_bytes(qw);
    p.qzeros = words_bytes(qz);
  }
  if (w.scale_dtype == st::DType::F32) {
    p.scales.resize(4 * w.scale_f32.size());
    std::memcpy(p.scales.data(), w.scale_f32.data(), p.scales.size());
  } else {
    p.scales.resize(2 * w.scale.size());
    std::memcpy(p.scales.data(), w.scale.data(), p.scales.size());
  }
  p.g_idx.resize(4 * w.g_idx.size());
  if (!w.g_idx.empty()) std::memcpy(p.g_idx.data(), w.g_idx.data(), p.g_idx.size());
  return p;
}

std::uint16_t expected_value(const Logical& w, std::uint64_t o, std::uint64_t i, const OutputFormat& format) {
  const std::uint64_t g = w.group_of(i);
  const auto d = static_cast<float>(static_cast<std::int64_t>(w.q[i * w.out + o]) -
                                    static_cast<std::int64_t>(w.zero[g * w.out + o]));
  const float y = exact::product(d, w.scale_value(g, o));
  return format.dtype == st::DType::F16
             ? exact::round_to_f16(y)
             : exact::round_to_bf16(y, static_cast<std::uint16_t>(format.bf16_nan));
}

std::vector<std::byte> run_whole(const Logical& w, const Packed& p, const OutputFormat& format) {
  IntQuantBand band;
  band.quant = w.quant();
  band.tile = {0, w.out, 0, w.in};
  band.packed_codes = p.qweight;
  band.packed_zeros = p.qzeros;
  band.scales = p.scales;
  band.scale_dtype = w.scale_dtype;
  band.group_index = p.g_idx;
  std::vector<std::byte> out(2 * w.out * w.in);
  dequantize_int(band, format, out);
  return out;
}

std::uint16_t u16_at(const std::vector<std::byte>& bytes, std::size_t index) {
  std::uint16_t value;
  std::memcpy(&value, bytes.data() + 2 * index, 2);
  return value;
}

// Mismatching elements of the whole weight; the first few reported.
std::size_t count_mismatches(const Logical& w, const std::vector<std::byte>& got,
                             const OutputFormat& format) {
  std::size_t mismatches = 0;
  for (std::uint64_t o = 0; o < w.out; ++o) {
    for (std::uint64_t i = 0; i < w.in; ++i) {
      const std::uint16_t want = expected_value(w, o, i, format);
      const std::uint16_t have = u16_at(got, o * w.in + i);
      if (want != have && ++mismatches <= 5) {
        const std::uint64_t g = w.group_of(i);
        UNSCOPED_INFO("W[" << o << ", " << i << "]: q " << w.q[i * w.out + o] << " zero "
                           << w.zero[g * w.out + o] << " scale " << w.scale_value(g, o) << ": got 0x"
                           << std::hex << have << ", want 0x" << want << std::dec);
      }
    }
  }
  return mismatches;
}

// F16 scales: NaN (three patterns), infinities, zeros, subnormals, the largest finite, one that
// overflows F16 products (60000), one whose products are BF16 ties after an F16 rounding (0x3C03),
// negatives and a spread of powers of two from 2^-24 to 2^15.
std::vector<std::uint16_t> f16_scales() {
  std::vector<std::uint16_t> s = {0x7E00, 0x7C01, 0xFE00, 0x7C00, 0xFC00, 0x0000, 0x8000, 0x0001,
                                  0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7B53, 0x3C03, 0xBC03, 0x3C00,
                                  0xBC00, 0x2E66, 0x1A1F, 0xA1F4, 0x5BFF, 0x0200, 0x8001};
  for (int e = 1; e < 31; e += 3) s.push_back(static_cast<std::uint16_t>(e << 10 | 0x155));
  return s;
}

// BF16 scales: NaN, infinities, zeros, subnormals, the largest finite, negatives and a spread.
std::vector<std::uint16_t> bf16_scales() {
  std::vector<std::uint16_t> s = {0x7FC0, 0x7F81, 0xFFC0, 0x7F80, 0xFF80, 0x0000, 0x8000, 0x0001, 0x007F,
                                  0x0080, 0x7F7F, 0xFF7F, 0x3F80, 0xBF81, 0x3C23, 0x4C4D, 0x8033, 0x0C01};
  for (int e = 1; e < 255; e += 17) s.push_back(static_cast<std::uint16_t>(e << 7 | 0x35));
  return s;
}

// Every code (along in, repeating within each group) x every zero (one per output column) x every
// scale (one per group).
Logical every_code_zero_scale(IntPacking packing, unsigned bits, st::DType scale_dtype,
                              const std::vector<std::uint16_t>& scales, std::uint64_t group_size) {
  const std::uint64_t levels = std::uint64_t{1} << bits;
  Logical w;
  w.packing = packing;
  w.bits = bits;
  w.scale_dtype = scale_dtype;
  w.groups = scales.size();
  w.group_size = group_size;
  w.in = group_size * w.groups;
  w.out = std::max<std::uint64_t>({levels, 32 / bits, 8});
  w.q.resize(w.in * w.out);
  for (std::uint64_t i = 0; i < w.in; ++i)
    for (std::uint64_t o = 0; o < w.out; ++o)
      w.q[i * w.out + o] = static_cast<std::uint32_t>((i + o / levels) % levels);
  w.zero.resize(w.groups * w.out);
  w.scale.resize(w.groups * w.out);
  for (std::uint64_t g = 0; g < w.groups; ++g) {
    for (std::uint64_t o = 0; o < w.out; ++o) {
      w.zero[g * w.out + o] = static_cast<std::uint32_t>(o % levels);
      w.scale[g * w.out + o] = scales[g];
    }
  }
  return w;
}

const OutputFormat kBf16{st::DType::BF16, Bf16Nan::canonical};
const OutputFormat kF16{st::DType::F16, Bf16Nan::canonical};

}  // namespace

TEST_CASE("dequantize_int: every 4-bit code x every zero x special scales, each packing, BF16 and F16") {
  for (const IntPacking packing : {IntPacking::gptq, IntPacking::gptq_v2, IntPacking::awq}) {
    for (const st::DType scale_dtype : {st::DType::F16, st::DType::BF16}) {
      // Group size 16: each element computed; 128: through the per-row table.
      for (const std::uint64_t group_size : {16u, 128u}) {
        const Logical w =
            every_code_zero_scale(packing, 4, scale_dtype,
                                  scale_dtype == st::DType::F16 ? f16_scales() : bf16_scales(), group_size);
        const Packed p = pack(w);
        for (const OutputFormat& format : {kBf16, kF16}) {
          INFO("packing " << static_cast<int>(packing) << ", scales " << st::dtype_name(scale_dtype)
                          << ", group size " << group_size << ", out " << st::dtype_name(format.dtype));
          CHECK(count_mismatches(w, run_whole(w, p, format), format) == 0);
        }
      }
    }
  }
}

TEST_CASE("dequantize_int: every 8-bit and every 2-bit code x every zero, GPTQ v1 and v2") {
  for (const unsigned bits : {8u, 2u}) {
    for (const IntPacking packing : {IntPacking::gptq, IntPacking::gptq_v2}) {
      const Logical w =
          every_code_zero_scale(packing, bits, st::DType::F16, f16_scales(), bits == 8 ? 256 : 32);
      const Packed p = pack(w);
      for (const OutputFormat& format : {kBf16, kF16}) {
        INFO(bits << "-bit, packing " << static_cast<int>(packing) << ", out "
                  << st::dtype_name(format.dtype));
        CHECK(count_mismatches(w, run_whole(w, p, format), format) == 0);
      }
    }
  }
}

TEST_CASE("dequantize_int: F32 scales give the float32 product rounded once more") {
  Logical w =
      every_code_zero_scale(IntPacking::gptq_v2, 4, st::DType::F32, std::vector<std::uint16_t>(6), 128);
  const float specials[] = {
      1.6423611640930176f, -3.0e-39f, 1e-45f, 3.4e38f, std::numeric_limits<float>::infinity(), 0.1f};
  w.scale_f32.resize(w.groups * w.out);
  for (std::uint64_t g = 0; g < w.groups; ++g)
    for (std::uint64_t o = 0; o < w.out; ++o) w.scale_f32[g * w.out + o] = specials[g];
  const Packed p = pack(w);
  for (const OutputFormat& format : {kBf16, kF16})
    CHECK(count_mismatches(w, run_whole(w, p, format), format) == 0);
}

TEST_CASE("dequantize_int: the rule's examples, bit for bit") {
  // QUANT_FORMATS.md 2.1: F16 scale 0x3C03 x (q - z) = -6 -> BF16 0xC0C1 (one rounding, not 0xC0C0);
  // scale 60000 x 2 -> BF16 0x47EA (not infinity); both F16 outputs from the exact product.
  struct Case {
    std::uint16_t scale;
    std::uint32_t q, z;
    std::uint16_t bf16, f16;
  };
  const Case cases[] = {{0x3C03, 2, 8, 0xC0C1, 0xC604}, {0x7B53, 10, 8, 0x47EA, 0x7C00},
                        {0x0000, 3, 8, 0x8000, 0x8000}, {0x8000, 8, 8, 0x8000, 0x8000},
                        {0x7C00, 8, 8, 0x7FC0, 0x7E00}, {0xFE00, 9, 8, 0x7FC0, 0x7E00}};
  for (const Case& c : cases) {
    Logical w;
    w.packing = IntPacking::gptq_v2;
    w.in = 8, w.out = 8, w.groups = 1, w.group_size = 8;
    w.q.assign(64, c.q);
    w.zero.assign(8, c.z);
    w.scale.assign(8, c.scale);
    const Packed p = pack(w);
    CHECK(u16_at(run_whole(w, p, kBf16), 0) == c.bf16);
    CHECK(u16_at(run_whole(w, p, kF16), 0) == c.f16);
  }
}

TEST_CASE("dequantize_int: v1 zero words as the writers leave them") {
  // Stored words and the zeros the rule reads (fields from the lowest): GPTQModel's subtraction of a
  // zero of 0 borrows from the next field, which the carry gives back; a 15 in the top field loses
  // its carry; AutoGPTQ's OR of a -1 leaves every field 15 from there on.
  struct Case {
    std::uint32_t stored;
    std::uint32_t zeros[8];
  };
  const Case cases[] = {
      {0x7777773Fu, {0, 5, 8, 8, 8, 8, 8, 8}},  // QUANT_FORMATS.md's example
      {0x77777777u, {8, 8, 8, 8, 8, 8, 8, 8}},  // symmetric
      {0xF7777777u, {8, 8, 8, 8, 8, 8, 8, 0}}, {0xFFFFFFFFu, {0, 1, 1, 1, 1, 1, 1, 1}},
      {0xFFFFF777u, {8, 8, 8, 0, 1, 1, 1, 1}},
  };
  for (const Case& c : cases) {
    Logical w;
    w.packing = IntPacking::gptq_v2;  // packed here as v2 (true zeros), then overwritten with the stored word
    w.in = 8, w.out = 8, w.groups = 1, w.group_size = 8;
    w.q.assign(64, 15);
    w.zero.assign(c.zeros, c.zeros + 8);
    w.scale.assign(8, 0x3C00);  // 1.0
    Packed p = pack(w);
    std::memcpy(p.qzeros.data(), &c.stored, 4);
    w.packing = IntPacking::gptq;
    INFO(std::hex << c.stored);
    CHECK(count_mismatches(w, run_whole(w, p, kBf16), kBf16) == 0);
  }
}

TEST_CASE("dequantize_int: act-order g_idx, partial last group, random codes, zeros and scales") {
  std::mt19937 random(7);
  for (const unsigned bits : {4u, 8u}) {
    for (const IntPacking packing : {IntPacking::gptq, IntPacking::gptq_v2}) {
      Logical w;
      w.packing = packing;
      w.bits = bits;
      w.in = 704, w.out = 24, w.group_size = 128, w.groups = 6;  // the last group holds 64 rows
      std::vector<std::int32_t> order(w.in);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), random);
      w.g_idx.resize(w.in);
      for (std::uint64_t k = 0; k < w.in; ++k)
        w.g_idx[static_cast<std::size_t>(order[k])] = static_cast<std::int32_t>(k / 128);
      const std::uint32_t levels = 1u << bits;
      w.q.resize(w.in * w.out);
      for (auto& q : w.q) q = static_cast<std::uint32_t>(random() % levels);
      w.zero.resize(w.groups * w.out);
      for (auto& z : w.zero) z = static_cast<std::uint32_t>(random() % levels);
      w.scale.resize(w.groups * w.out);
      for (auto& s : w.scale) s = static_cast<std::uint16_t>(0x1000 + random() % 0x4000);
      const Packed p = pack(w);
      for (const OutputFormat& format : {kBf16, kF16})
        CHECK(count_mismatches(w, run_whole(w, p, format), format) == 0);
      // The same weight read without g_idx gives other values (the test can fail).
      Logical plain = w;
      plain.g_idx.clear();
      const Packed plain_packed = pack(plain);
      CHECK(run_whole(plain, plain_packed, kBf16) != run_whole(w, p, kBf16));
    }
  }
}

TEST_CASE("dequantize_int: AWQ's nibble order is not the sequential one") {
  Logical w;
  w.packing = IntPacking::awq;
  w.in = 4, w.out = 8, w.groups = 1, w.group_size = 4;
  w.q.resize(32);
  for (std::uint64_t i = 0; i < 4; ++i)
    for (std::uint64_t o = 0; o < 8; ++o) w.q[i * 8 + o] = static_cast<std::uint32_t>(o + i);
  w.zero.assign(8, 0);
  w.scale.assign(8, 0x3C00);
  const Packed p = pack(w);
  std::uint32_t word0;
  std::memcpy(&word0, p.qweight.data(), 4);
  CHECK(word0 == 0x75316420u);  // columns 0..7 hold 0..7: nibbles 0, 2, 4, 6, 1, 3, 5, 7
  const std::vector<std::byte> out = run_whole(w, p, kBf16);
  for (std::uint64_t o = 0; o < 8; ++o)
    CHECK(u16_at(out, o * 4) == exact::round_to_bf16(static_cast<float>(o), 0x7FC0));
}

TEST_CASE("int_tile_sources: the slices a tile reads") {
  struct Case {
    IntPacking packing;
    unsigned bits;
    IntTile tile;
    IntTileSources want;
  };
  // Weight [out 64, in 256], 2 groups.
  const Case cases[] = {
      {IntPacking::gptq, 4, {0, 64, 0, 256}, {{0, 32}, {0, 64}, {0, 8}, {0, 64}, {0, 256}}},
      {IntPacking::gptq, 4, {8, 16, 64, 64}, {{8, 16}, {8, 24}, {1, 3}, {8, 24}, {64, 128}}},
      {IntPacking::gptq, 4, {3, 10, 5, 20}, {{0, 4}, {3, 13}, {0, 2}, {3, 13}, {5, 25}}},
      {IntPacking::gptq, 8, {3, 10, 5, 20}, {{1, 7}, {3, 13}, {0, 4}, {3, 13}, {5, 25}}},
      {IntPacking::awq, 4, {3, 10, 5, 20}, {{5, 25}, {0, 2}, {0, 2}, {3, 13}, {5, 25}}},
      {IntPacking::awq, 4, {16, 48, 0, 256}, {{0, 256}, {2, 8}, {2, 8}, {16, 64}, {0, 256}}},
  };
  for (const Case& c : cases) {
    const IntTileSources s = int_tile_sources({c.packing, c.bits, 256, 64, 2, 128}, c.tile, true);
    const auto same = [](IndexRange a, IndexRange b) { return a.begin == b.begin && a.end == b.end; };
    INFO("tile out " << c.tile.out_begin << "+" << c.tile.out_count << " in " << c.tile.in_begin << "+"
                     << c.tile.in_count);
    CHECK(same(s.codes_rows, c.want.codes_rows));
    CHECK(same(s.codes_cols, c.want.codes_cols));
    CHECK(same(s.zeros_cols, c.want.zeros_cols));
    CHECK(same(s.scales_cols, c.want.scales_cols));
    CHECK(same(s.group_index, c.want.group_index));
  }
}

namespace {

// rows [r0, r1) x cols [c0, c1) of a row-major matrix of `cols` elements of `size` bytes.
std::vector<std::byte> slice(const std::vector<std::byte>& m, std::uint64_t cols, std::size_t size,
                             IndexRange rows, IndexRange range) {
  std::vector<std::byte> out;
  for (std::uint64_t r = rows.begin; r < rows.end; ++r) {
    const auto* first = m.data() + (r * cols + range.begin) * size;
    out.insert(out.end(), first, first + range.size() * size);
  }
  return out;
}

}  // namespace

TEST_CASE("dequantize_int: tiles of any bounds give the whole weight's values") {
  std::mt19937 random(11);
  for (const IntPacking packing : {IntPacking::gptq, IntPacking::gptq_v2, IntPacking::awq}) {
    for (const bool act_order : {false, true}) {
      Logical w;
      w.packing = packing;
      w.in = 320, w.out = 48, w.group_size = 64, w.groups = 5;
      w.q.resize(w.in * w.out);
      for (auto& q : w.q) q = static_cast<std::uint32_t>(random() % 16);
      w.zero.resize(w.groups * w.out);
      for (auto& z : w.zero) z = static_cast<std::uint32_t>(random() % 16);
      w.scale.resize(w.groups * w.out);
      for (auto& s : w.scale) s = static_cast<std::uint16_t>(0x2000 + random() % 0x2000);
      if (act_order && packing != IntPacking::awq) {
        w.g_idx.resize(w.in);
        for (auto& g : w.g_idx) g = static_cast<std::int32_t>(random() % 5);
      }
      const Packed p = pack(w);
      const std::vector<std::byte> whole = run_whole(w, p, kBf16);
      REQUIRE(count_mismatches(w, whole, kBf16) == 0);
      const bool awq = packing == IntPacking::awq;
      const IntTile tiles[] = {{0, 48, 0, 320}, {8, 8, 0, 320},   {5, 17, 0, 320},
                               {0, 48, 64, 64}, {13, 30, 7, 201}, {47, 1, 319, 1}};
      for (const IntTile& tile : tiles) {
        const IntTileSources s = int_tile_sources(w.quant(), tile, !w.g_idx.empty());
        IntQuantBand band;
        band.quant = w.quant();
        band.tile = tile;
        const std::vector<std::byte> qweight =
            slice(p.qweight, awq ? w.out / 8 : w.out, 4, s.codes_rows, s.codes_cols);
        const std::vector<std::byte> qzeros = slice(p.qzeros, w.out / 8, 4, {0, w.groups}, s.zeros_cols);
        const std::vector<std::byte> scales = slice(p.scales, w.out, 2, {0, w.groups}, s.scales_cols);
        const std::vector<std::byte> g_idx =
            w.g_idx.empty() ? std::vector<std::byte>{} : slice(p.g_idx, w.in, 4, {0, 1}, s.group_index);
        band.packed_codes = qweight, band.packed_zeros = qzeros, band.scales = scales,
        band.group_index = g_idx;
        std::vector<std::byte> out(2 * tile.out_count * tile.in_count);
        dequantize_int(band, kBf16, out);
        std::size_t mismatches = 0;
        for (std::uint64_t r = 0; r < tile.out_count; ++r)
          for (std::uint64_t k = 0; k < tile.in_count; ++k)
            mismatches += u16_at(out, r * tile.in_count + k) !=
                          u16_at(whole, (tile.out_begin + r) * w.in + tile.in_begin + k);
        INFO("packing " << static_cast<int>(packing) << " tile out " << tile.out_begin << "+"
                        << tile.out_count << " in " << tile.in_begin << "+" << tile.in_count);
        CHECK(mismatches == 0);
      }
    }
  }
}

TEST_CASE("dequantize_int: bad shapes, spans and g_idx values are refused with the numbers") {
  Logical w = every_code_zero_scale(IntPacking::gptq, 4, st::DType::F16, {0x3C00, 0x3C00}, 16);
  w.g_idx.resize(w.in);
  for (std::uint64_t i = 0; i < w.in; ++i) w.g_idx[i] = static_cast<std::int32_t>(i / 16);
  w.g_idx[17] = 2;
  const Packed p = pack(w);
  const auto message = [&](IntQuantBand band, std::size_t out_bytes) {
    std::vector<std::byte> out(out_bytes);
    try {
      dequantize_int(band, kBf16, out);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  IntQuantBand band;
  band.quant = w.quant();
  band.tile = {0, w.out, 0, w.in};
  band.packed_codes = p.qweight, band.packed_zeros = p.qzeros, band.scales = p.scales,
  band.group_index = p.g_idx;
  const std::size_t out_bytes = 2 * w.out * w.in;
  CHECK(message(band, out_bytes) ==
        "dequantize_int: group index 2 of input row 17 is outside [0, 2) (gptq 4-bit, in 32, out 16, groups "
        "2, group size 16)");
  IntQuantBand short_scales = band;
  short_scales.scales = std::span(p.scales).first(10);
  CHECK(message(short_scales, out_bytes) ==
        "dequantize_int: scales holds 10 bytes, not 64 (tile out 0+16, in 0+32) (gptq 4-bit, in 32, out 16, "
        "groups 2, group size 16)");
  CHECK(message(band, out_bytes - 2) ==
        "dequantize_int: the output holds 1022 bytes, not 1024 (tile out 0+16, in 0+32) (gptq 4-bit, in 32, "
        "out 16, groups 2, group size 16)");
  IntQuantBand three_bits = band;
  three_bits.quant.bits = 3;
  CHECK(message(three_bits, out_bytes) ==
        "dequantize_int: GPTQ codes of 2, 4 or 8 bits only (gptq 3-bit, in 32, out 16, groups 2, group size "
        "16)");
  IntQuantBand awq8 = band;
  awq8.quant.packing = IntPacking::awq, awq8.quant.bits = 8;
  CHECK(message(awq8, out_bytes) ==
        "dequantize_int: AWQ's GEMM layout has 4-bit codes only (awq 8-bit, in 32, out 16, groups 2, group "
        "size 16)");
  IntQuantBand no_g_idx = band;
  no_g_idx.group_index = {};
  no_g_idx.quant.group_size = 8;
  CHECK(message(no_g_idx, out_bytes) ==
        "dequantize_int: without a group index the groups must be ceil(in / group size) = 4 (gptq 4-bit, in "
        "32, out 16, groups 2, group size 8)");
  IntQuantBand outside = band;
  outside.tile = {10, 7, 0, 32};
  CHECK(message(outside, out_bytes) ==
        "dequantize_int: tile out 10+7, in 0+32 is empty or leaves the weight (gptq 4-bit, in 32, out 16, "
        "groups 2, group size 16)");
}
