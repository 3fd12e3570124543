#include <shardwise/core/error.hpp>
#include <shardwise/transform/dequantize_int.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <shardwise/transform/isa.hpp>
#include "transform/rounding.hpp"

// One output row at a time: the row's codes are unpacked from the packed words (strided reads down
// a column of qweight for GPTQ, along a row of it for AWQ), then each code meets its group's zero
// and scale. For 2- and 4-bit codes the row's answers for every (group, code) pair are computed
// once (the very arithmetic of the rule) when that is cheaper than the row itself, and each element
// is a table lookup; otherwise (8-bit codes, rows short beside their group count) each element is
// computed. The tests run both. With AVX2 and BF16 output, each run of one group is computed eight
// elements at a time instead (the same arithmetic); tests/transform/isa_test.cpp compares the two.

namespace shardwise::transform {

namespace {

// AWQ: column 8k + c of a row is nibble kAwqNibble[c] of word k (AutoAWQ's AWQ_REVERSE_ORDER).
constexpr std::array<unsigned, 8> kAwqNibble = {0, 4, 1, 5, 2, 6, 3, 7};

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept { return a / b + (a % b != 0 ? 1 : 0); }

const char* packing_name(IntPacking packing) noexcept {
  switch (packing) {
    case IntPacking::gptq:
      return "gptq";
    case IntPacking::gptq_v2:
      return "gptq_v2";
    case IntPacking::awq:
      return "awq";
  }
  return "?";
}

[[noreturn]] void fail(const IntQuant& quant, const std::string& what) {
  throw Error(ErrorKind::input,
              fmt::format("dequantize_int: {} ({} {}-bit, in {}, out {}, groups {}, group size {})", what,
                          packing_name(quant.packing), quant.bits, quant.in, quant.out, quant.groups,
                          quant.group_size));
}

std::uint64_t checked_mul(const IntQuant& quant, std::uint64_t a, std::uint64_t b) {
  std::uint64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) fail(quant, fmt::format("{} x {} overflows 64 bits", a, b));
  return product;
}

void check_quant(const IntQuant& quant, bool has_group_index) {
  const bool awq = quant.packing == IntPacking::awq;
  if (awq ? quant.bits != 4 : (quant.bits != 2 && quant.bits != 4 && quant.bits != 8)) {
    fail(quant, awq ? "AWQ's GEMM layout has 4-bit codes only" : "GPTQ codes of 2, 4 or 8 bits only");
  }
  const unsigned per_word = 32 / quant.bits;
  if (quant.in == 0 || quant.out == 0 || quant.groups == 0) fail(quant, "an empty weight or no groups");
  if (quant.out % per_word != 0)
    fail(quant, fmt::format("out is not a multiple of {} codes per word", per_word));
  if (!awq && quant.in % per_word != 0)
    fail(quant, fmt::format("in is not a multiple of {} codes per word", per_word));
  if (quant.groups > quant.in) fail(quant, "more groups than input rows");
  if (!has_group_index && (quant.group_size == 0 || ceil_div(quant.in, quant.group_size) != quant.groups)) {
    fail(quant, fmt::format("without a group index the groups must be ceil(in / group size) = {}",
                            quant.group_size == 0 ? 0 : ceil_div(quant.in, quant.group_size)));
  }
}

std::uint32_t load_word(const std::byte* words, std::uint64_t index) noexcept {
  std::uint32_t word;
  std::memcpy(&word, words + 4 * index, 4);
  return word;
}

// The group of each of the tile's input columns, from g_idx (checked) or i / group_size.
std::vector<std::uint32_t> tile_groups(const IntQuantBand& band) {
  const IntQuant& quant = band.quant;
  std::vector<std::uint32_t> groups(band.tile.in_count);
  for (std::uint64_t k = 0; k < band.tile.in_count; ++k) {
    const std::uint64_t i = band.tile.in_begin + k;
    if (band.group_index.empty()) {
      groups[k] = static_cast<std::uint32_t>(i / quant.group_size);
      continue;
    }
    std::int64_t value = 0;
    if (band.group_index_dtype == st::DType::I64) {
      std::memcpy(&value, band.group_index.data() + 8 * k, 8);
    } else {
      std::int32_t narrow = 0;
      std::memcpy(&narrow, band.group_index.data() + 4 * k, 4);
      value = narrow;
    }
    if (value < 0 || static_cast<std::uint64_t>(value) >= quant.groups) {
      fail(quant, fmt::format("group index {} of input row {} is outside [0, {})", value, i, quant.groups));
    }
    groups[k] = static_cast<std::uint32_t>(value);
  }
  return groups;
}

void check_spans(const IntQuantBand& band, const IntTileSources& sources, const OutputFormat& format,
                 std::size_t out_bytes) {
  const IntQuant& quant = band.quant;
  if (band.scale_dtype != st::DType::F16 && band.scale_dtype != st::DType::BF16 &&
      band.scale_dtype != st::DType::F32) {
    fail(quant, fmt::format("scale dtype {} is not F16, BF16 or F32", st::dtype_name(band.scale_dtype)));
  }
  if (!band.group_index.empty() && band.group_index_dtype != st::DType::I32 &&
      band.group_index_dtype != st::DType::I64) {
    fail(quant,
         fmt::format("group index dtype {} is not I32 or I64", st::dtype_name(band.group_index_dtype)));
  }
  if (format.dtype != st::DType::BF16 && format.dtype != st::DType::F16) {
    fail(quant, fmt::format("output dtype {} is neither BF16 nor F16", st::dtype_name(format.dtype)));
  }
  const auto expect = [&](const char* what, std::size_t got, std::uint64_t want) {
    if (got != want) {
      fail(quant,
           fmt::format("{} holds {} bytes, not {} (tile out {}+{}, in {}+{})", what, got, want,
                       band.tile.out_begin, band.tile.out_count, band.tile.in_begin, band.tile.in_count));
    }
  };
  expect("the packed codes", band.packed_codes.size(),
         checked_mul(quant, checked_mul(quant, sources.codes_rows.size(), sources.codes_cols.size()), 4));
  expect("the packed zeros", band.packed_zeros.size(),
         checked_mul(quant, checked_mul(quant, quant.groups, sources.zeros_cols.size()), 4));
  expect("scales", band.scales.size(),
         checked_mul(quant, checked_mul(quant, quant.groups, sources.scales_cols.size()),
                     st::dtype_bits(band.scale_dtype) / 8));
  if (!band.group_index.empty()) {
    expect("the group index", band.group_index.size(),
           checked_mul(quant, sources.group_index.size(), st::dtype_bits(band.group_index_dtype) / 8));
  }
  expect("the output", out_bytes,
         checked_mul(quant, checked_mul(quant, band.tile.out_count, band.tile.in_count), 2));
}

// The eight 4-bit fields of a word as eight bytes, field j in byte j (little-endian).
std::uint64_t nibbles_to_bytes(std::uint32_t word) noexcept {
  std::uint64_t v = word;
  v = (v | (v << 16)) & 0x0000FFFF0000FFFFull;
  v = (v | (v << 8)) & 0x00FF00FF00FF00FFull;
  return (v | (v << 4)) & 0x0F0F0F0F0F0F0F0Full;
}

// An 8 x 8 byte matrix, row j in block[j] (byte i = column i), transposed in place: the
// off-diagonal 4 x 4 blocks swapped, then the 2 x 2 blocks within them, then single bytes.
void transpose_bytes(std::array<std::uint64_t, 8>& block) noexcept {
  const auto swap = [&](std::size_t a, std::size_t b, unsigned shift, std::uint64_t mask) {
    const std::uint64_t t = ((block[a] >> shift) ^ block[b]) & mask;
    block[a] ^= t << shift;
    block[b] ^= t;
  };
  for (std::size_t i = 0; i < 4; ++i) swap(i, i + 4, 32, 0x00000000FFFFFFFFull);
  for (std::size_t i : {0u, 1u, 4u, 5u}) swap(i, i + 2, 16, 0x0000FFFF0000FFFFull);
  for (std::size_t i = 0; i < 8; i += 2) swap(i, i + 1, 8, 0x00FF00FF00FF00FFull);
}

// The codes of `count` output rows from `o` (absolute) over the tile's input columns, row r at
// codes[r * in_count]. For AWQ the rows share their words' column (o / 8 is the same for all), so
// each word is loaded once for all of them; for GPTQ `count` is 1 and each word holds 32/b codes.
void unpack_rows(const IntQuantBand& band, const IntTileSources& sources, std::uint64_t o,
                 std::uint64_t count, std::vector<std::uint8_t>& codes) noexcept {
  const unsigned bits = band.quant.bits;
  const std::uint32_t mask = (1u << bits) - 1;
  const std::uint64_t cols = sources.codes_cols.size();
  const std::uint64_t in_count = band.tile.in_count;
  const std::byte* words = band.packed_codes.data();
  if (band.quant.packing == IntPacking::awq && count == 8 && in_count % 8 == 0) {
    // All eight rows of a word column: eight words down it (input columns k..k+7) are an 8 x 8
    // block of codes, word j's nibble p in byte p of row j once spread, transposed so that row p
    // holds nibble p of the eight words: the eight codes of output row o + c for c with
    // kAwqNibble[c] = p, stored at once.
    const std::uint64_t col = o / 8 - sources.codes_cols.begin;
    for (std::uint64_t k = 0; k < in_count; k += 8) {
      std::array<std::uint64_t, 8> block{};
      for (std::uint64_t j = 0; j < 8; ++j)
        block[j] = nibbles_to_bytes(load_word(words, (k + j) * cols + col));
      transpose_bytes(block);
      for (std::uint64_t c = 0; c < 8; ++c)
        std::memcpy(codes.data() + c * in_count + k, &block[kAwqNibble[c]], 8);
    }
    return;
  }
  if (band.quant.packing == IntPacking::awq) {
    std::array<unsigned, 8> shifts{};
    for (std::uint64_t r = 0; r < count; ++r) shifts[r] = bits * kAwqNibble[(o + r) % 8];
    const std::uint64_t col = o / 8 - sources.codes_cols.begin;
    for (std::uint64_t k = 0; k < in_count; ++k) {
      const std::uint32_t word = load_word(words, k * cols + col);
      for (std::uint64_t r = 0; r < count; ++r)
        codes[r * in_count + k] = static_cast<std::uint8_t>((word >> shifts[r]) & mask);
    }
    return;
  }
  const unsigned per_word = 32 / bits;
  const std::uint64_t col = o - sources.codes_cols.begin;
  std::uint64_t i = band.tile.in_begin;
  for (std::uint64_t k = 0; k < in_count;) {
    const std::uint32_t word = load_word(words, (i / per_word - sources.codes_rows.begin) * cols + col);
    for (unsigned field = static_cast<unsigned>(i % per_word); field < per_word && k < in_count;
         ++field, ++k, ++i) {
      codes[k] = static_cast<std::uint8_t>((word >> (bits * field)) & mask);
    }
  }
}

// The zero point of group g, output column o (absolute).
std::int32_t zero_at(const IntQuantBand& band, const IntTileSources& sources, std::uint64_t g,
                     std::uint64_t o) noexcept {
  const unsigned bits = band.quant.bits;
  const unsigned per_word = 32 / bits;
  std::uint32_t word = load_word(band.packed_zeros.data(),
                                 g * sources.zeros_cols.size() + o / per_word - sources.zeros_cols.begin);
  unsigned field = static_cast<unsigned>(o % per_word);
  switch (band.quant.packing) {
    case IntPacking::gptq:
      // Every field + 1 as one 32-bit addition: a stored 2^bits - 1 (a true zero of 0) carries
      // into the next field, which GPTQModel's v2 -> v1 subtraction borrowed from.
      word += bits == 2 ? 0x55555555u : bits == 4 ? 0x11111111u : 0x01010101u;
      break;
    case IntPacking::gptq_v2:
      break;
    case IntPacking::awq:
      field = kAwqNibble[o % 8];
      break;
  }
  return static_cast<std::int32_t>((word >> (bits * field)) & ((1u << bits) - 1));
}

void store(std::byte* out, std::uint16_t value) noexcept { std::memcpy(out, &value, 2); }

}  // namespace

IntTileSources int_tile_sources(const IntQuant& quant, const IntTile& tile, bool has_group_index) {
  check_quant(quant, has_group_index);
  if (tile.out_count == 0 || tile.in_count == 0 || tile.out_begin > quant.out ||
      quant.out - tile.out_begin < tile.out_count || tile.in_begin > quant.in ||
      quant.in - tile.in_begin < tile.in_count) {
    fail(quant, fmt::format("tile out {}+{}, in {}+{} is empty or leaves the weight", tile.out_begin,
                            tile.out_count, tile.in_begin, tile.in_count));
  }
  const std::uint64_t per_word = 32 / quant.bits;
  const std::uint64_t out_end = tile.out_begin + tile.out_count;
  const std::uint64_t in_end = tile.in_begin + tile.in_count;
  IntTileSources sources;
  if (quant.packing == IntPacking::awq) {
    sources.codes_rows = {tile.in_begin, in_end};
    sources.codes_cols = {tile.out_begin / 8, ceil_div(out_end, 8)};
  } else {
    sources.codes_rows = {tile.in_begin / per_word, ceil_div(in_end, per_word)};
    sources.codes_cols = {tile.out_begin, out_end};
  }
  sources.zeros_cols = {tile.out_begin / per_word, ceil_div(out_end, per_word)};
  sources.scales_cols = {tile.out_begin, out_end};
  if (has_group_index) sources.group_index = {tile.in_begin, in_end};
  return sources;
}

namespace {

// GCC vectorises only very cheap loops at -O2 (the release build); the computed rows are worth it.
#if defined(__GNUC__) && !defined(__clang__)
#define SHARDWISE_INT_VECTORIZE __attribute__((optimize("tree-vectorize")))
#else
#define SHARDWISE_INT_VECTORIZE
#endif

// Every element of a row computed: the rule's arithmetic, with the rounding inlined, over runs of
// one group (whole groups without act-order), whose zero and scale stay in registers.
template <class Round>
SHARDWISE_INT_VECTORIZE void compute_row(const std::uint8_t* codes, const std::uint32_t* groups,
                                         const std::int32_t* zeros, const float* scales,
                                         std::uint64_t in_count, std::byte* out_row, Round round) noexcept {
  for (std::uint64_t k = 0; k < in_count;) {
    const std::uint32_t g = groups[k];
    std::uint64_t end = k + 1;
    while (end < in_count && groups[end] == g) ++end;
    const std::int32_t zero = zeros[g];
    const float scale = scales[g];
    for (; k < end; ++k)
      store(out_row + 2 * k, round(static_cast<float>(static_cast<std::int32_t>(codes[k]) - zero) * scale));
  }
}

// Whether the input columns' groups come in runs of 16 or more on average (no act-order, or an
// act-order g_idx that is nearly sorted): then runs of one group are worth computing with AVX2.
bool long_runs(const std::vector<std::uint32_t>& groups) noexcept {
  std::uint64_t runs = groups.empty() ? 0 : 1;
  for (std::size_t k = 1; k < groups.size(); ++k) runs += groups[k] != groups[k - 1] ? 1 : 0;
  return groups.size() >= 16 * runs;
}

// The per-row work of dequantize_int, with its buffers reused from row to row.
class RowDequantizer {
 public:
  RowDequantizer(const IntQuantBand& band, const IntTileSources& sources, const OutputFormat& format, Isa isa)
      : band_(band),
        sources_(sources),
        format_(format),
        groups_(tile_groups(band)),
        levels_(std::uint64_t{1} << band.quant.bits),
        vector_(isa == Isa::avx2 && format.dtype == st::DType::BF16 && long_runs(groups_)),
        lookup_(!vector_ && band.quant.bits <= 4 && band.quant.groups * levels_ * 2 <= band.tile.in_count),
        zeros_(band.quant.groups),
        scales_(band.quant.groups),
        table_(lookup_ ? band.quant.groups * levels_ : 0) {}

  // Output row `row` of the tile from its codes. The loops read locals only: `out_row` is bytes,
  // which may alias anything, so members would be reloaded after every store.
  void run(std::uint64_t row, const std::uint8_t* codes, std::byte* out_row) {
    const std::uint64_t o = band_.tile.out_begin + row;
    const std::uint64_t group_count = band_.quant.groups, levels = levels_, in_count = band_.tile.in_count;
    std::int32_t* zeros = zeros_.data();
    float* scales = scales_.data();
    const std::uint32_t* groups = groups_.data();
    for (std::uint64_t g = 0; g < group_count; ++g) {
      zeros[g] = zero_at(band_, sources_, g, o);
      scales[g] = scale_to_f32(band_.scales.data(), band_.scale_dtype, g * band_.tile.out_count + row);
    }
    const OutputFormat format = format_;
    if (vector_) {
      const auto nan_bits = static_cast<std::uint16_t>(format.bf16_nan);
      for (std::uint64_t k = 0; k < in_count;) {
        const std::uint32_t g = groups[k];
        std::uint64_t end = k + 1;
        while (end < in_count && groups[end] == g) ++end;
        avx2::dequantize_int_run(codes + k, out_row + 2 * k, end - k, zeros[g], scales[g], nan_bits);
        k = end;
      }
      return;
    }
    if (!lookup_) {
      const auto nan_bits = static_cast<std::uint16_t>(format.bf16_nan);
      if (format.dtype == st::DType::F16) {
        compute_row(codes, groups, zeros, scales, in_count, out_row,
                    [](float y) { return detail::round_f16(y); });
      } else {
        compute_row(codes, groups, zeros, scales, in_count, out_row,
                    [nan_bits](float y) { return detail::round_bf16(y, nan_bits); });
      }
      return;
    }
    std::uint16_t* table = table_.data();
    for (std::uint64_t g = 0; g < group_count; ++g) {
      for (std::uint64_t q = 0; q < levels; ++q) {
        const auto d = static_cast<float>(static_cast<std::int32_t>(q) - zeros[g]);
        table[g * levels + q] = round_to_output(d * scales[g], format);
      }
    }
    for (std::uint64_t k = 0; k < in_count; ++k) store(out_row + 2 * k, table[groups[k] * levels + codes[k]]);
  }

 private:
  const IntQuantBand& band_;
  const IntTileSources& sources_;
  const OutputFormat& format_;
  const std::vector<std::uint32_t> groups_;
  const std::uint64_t levels_;
  const bool vector_;
  const bool lookup_;
  std::vector<std::int32_t> zeros_;
  std::vector<float> scales_;
  std::vector<std::uint16_t> table_;
};

}  // namespace

void dequantize_int(const IntQuantBand& band, const OutputFormat& format, std::span<std::byte> out) {
  dequantize_int(band, format, out, best_isa());
}

void dequantize_int(const IntQuantBand& band, const OutputFormat& format, std::span<std::byte> out, Isa isa) {
  const IntTileSources sources = int_tile_sources(band.quant, band.tile, !band.group_index.empty());
  check_spans(band, sources, format, out.size());
  RowDequantizer dequantizer(band, sources, format, isa);
  const bool awq = band.quant.packing == IntPacking::awq;
  const std::uint64_t in_count = band.tile.in_count;
  const unsigned per_word = 32 / band.quant.bits;
  if (!awq && band.quant.bits != 2 && band.tile.in_begin % per_word == 0 && in_count % per_word == 0) {
    // GPTQ, 4 or 8 bits, whole words: kChunkRows output rows' codes unpacked together, each packed
    // row's words read along it (their columns are neighbouring output rows) and each word's codes
    // written as one 8- or 4-byte store; then row by row.
    constexpr std::uint64_t kChunkRows = 32;
    std::vector<std::uint8_t> codes(kChunkRows * in_count);
    const std::uint64_t cols = sources.codes_cols.size();
    const std::uint64_t first_word_row = band.tile.in_begin / per_word - sources.codes_rows.begin;
    for (std::uint64_t row = 0; row < band.tile.out_count; row += kChunkRows) {
      const std::uint64_t count = std::min(kChunkRows, band.tile.out_count - row);
      const std::uint64_t col = band.tile.out_begin + row - sources.codes_cols.begin;
      for (std::uint64_t p = 0; p < in_count / per_word; ++p) {
        const std::byte* line = band.packed_codes.data() + 4 * ((first_word_row + p) * cols + col);
        std::uint8_t* at = codes.data() + p * per_word;
        for (std::uint64_t r = 0; r < count; ++r, at += in_count) {
          const std::uint32_t word = load_word(line, r);
          if (per_word == 8) {
            const std::uint64_t spread = nibbles_to_bytes(word);
            std::memcpy(at, &spread, 8);
          } else {
            std::memcpy(at, &word, 4);
          }
        }
      }
      for (std::uint64_t r = 0; r < count; ++r)
        dequantizer.run(row + r, codes.data() + r * in_count, out.data() + 2 * (row + r) * in_count);
    }
    return;
  }
  std::vector<std::uint8_t> codes((awq ? 8 : 1) * in_count);
  for (std::uint64_t row = 0; row < band.tile.out_count;) {
    const std::uint64_t o = band.tile.out_begin + row;
    const std::uint64_t count = awq ? std::min<std::uint64_t>(8 - o % 8, band.tile.out_count - row) : 1;
    unpack_rows(band, sources, o, count, codes);
    for (std::uint64_t r = 0; r < count; ++r) {
      dequantizer.run(row + r, codes.data() + r * in_count, out.data() + 2 * (row + r) * in_count);
    }
    row += count;
  }
}

}  // namespace shardwise::transform
