#pragma once
// Integer-packed weights dequantised to BF16 or F16: GPTQ ("gptq" v1 and "gptq_v2", 2, 4 or 8 bits,
// symmetric or not, with or without act-order g_idx) and AutoAWQ's GEMM layout (4 bits). Pure
// functions on byte spans: no I/O, no threads, no tensor names. The result is the Hugging Face
// weight [out, in], the transpose of the packed codes' [in, out]:
//
//     W[o, i] = out( f32(q[i, o] - z[g(i), o]) x f32(s[g(i), o]) )   one float32 multiply, rounded
//                                                                   once to the output dtype
// with g(i) = g_idx[i] when given, else i / group_size. The stored members (words are unsigned
// 32-bit little-endian; field j of a word is bits [bits*j, bits*j + bits)):
//
//   packing   qweight                  qzeros                     zero z of a field
//   gptq      I32 [in*bits/32, out]    I32 [G, out*bits/32]       the fields of (word + 0x11..1) mod 2^32:
//             (fields along in)        (fields along out)          stored zero - 1, a carry into the next
//             field
//   gptq_v2   as gptq                  as gptq                    the field
//   awq       I32 [in, out/8]          I32 [G, out/8]             the field
//             (nibble AWQ_ORDER[o % 8] of word o / 8, both members: column 8k + c is nibble
//              [0, 4, 1, 5, 2, 6, 3, 7][c] of word k)
//   scales    F16, BF16 or F32 [G, out];   g_idx I32 or I64 [in] (optional; values in [0, G))
//
// Symmetric checkpoints are the same arithmetic with every zero 2^(bits-1). docs/transforms.md
// says where AutoGPTQ, GPTQModel and AutoAWQ compute otherwise.
//
// Bands. A call computes one tile of W: output rows [out_begin, out_begin + out_count) x input
// columns [in_begin, in_begin + in_count), any bounds, written as a row-major [out_count, in_count]
// block. It reads the slices of the members that int_tile_sources names (row-major, contiguous):
// qweight and the zeros and scales of the tile's output columns (every group's row: with act-order
// any input row may use any group), and the tile's stretch of g_idx. Output-row bands (in_count =
// in) are contiguous in the output file, so the engine can stream a weight in bounded memory: a
// band of n rows reads about n*in*bits/8 bytes of qweight and writes n*in*2.

#include <cstddef>
#include <cstdint>
#include <span>

#include <shardwise/safetensors/dtype.hpp>
#include <shardwise/transform/float16.hpp>
#include <shardwise/transform/index_range.hpp>

namespace shardwise::transform {

enum class IntPacking {
  gptq,     // GPTQ v1 (AutoGPTQ, GPTQModel's "gptq"): zero stored minus one
  gptq_v2,  // GPTQModel's "gptq_v2": zero stored as it is
  awq,      // AutoAWQ GEMM ("version": "gemm"), 4-bit only
};

// The whole weight's quantisation: W is [out, in]; `groups` is G, the scales' rows. Without g_idx
// input row i is in group i / group_size, and G must be ceil(in / group_size) (group_size -1 in a
// config means one group: pass in).
struct IntQuant {
  IntPacking packing = IntPacking::gptq;
  unsigned bits = 4;  // 2, 4 or 8 (gptq, gptq_v2); 4 (awq)
  std::uint64_t in = 0;
  std::uint64_t out = 0;
  std::uint64_t groups = 0;
  std::uint64_t group_size = 0;  // unused when g_idx is given
};

struct IntTile {
  std::uint64_t out_begin = 0;
  std::uint64_t out_count = 0;
  std::uint64_t in_begin = 0;
  std::uint64_t in_count = 0;
};

// The slices of the stored members a tile reads: qweight[codes_rows, codes_cols],
// qzeros[all G rows, zeros_cols], scales[all G rows, scales_cols], g_idx[g_idx]. Dimensions are
// the stored ones (qweight's rows are packed words for GPTQ, its columns for AWQ).
struct IntTileSources {
  IndexRange codes_rows;
  IndexRange codes_cols;
  IndexRange zeros_cols;
  IndexRange scales_cols;
  IndexRange group_index;
};
// Throws Error(input) when the quantisation's shape is not one of the table above (bits, packing,
// `out` not a whole number of words, groups not ceil(in / group_size) without g_idx) or the tile is
// empty or leaves the weight.
IntTileSources int_tile_sources(const IntQuant& quant, const IntTile& tile, bool has_group_index);

struct IntQuantBand {
  IntQuant quant;
  IntTile tile;
  std::span<const std::byte> packed_codes;  // the packed codes: the slices int_tile_sources names, row-major
  std::span<const std::byte> packed_zeros;  // qzeros
  std::span<const std::byte> scales;
  st::DType scale_dtype = st::DType::F16;        // F16, BF16 or F32
  std::span<const std::byte> group_index;        // g_idx; empty: no act-order
  st::DType group_index_dtype = st::DType::I32;  // I32 or I64
};

// Writes `out`: tile.out_count x tile.in_count values of `format`. Throws Error(input) naming the
// numbers when a span's size is not its slice's, a dtype is not one handled, or a group index
// (g_idx value) lies outside [0, G). IEEE throughout: q = z gives a zero with the scale's sign, q < z with a
// scale of +0 gives -0, NaN scales NaN, infinite ones NaN (q = z) or +-inf.
void dequantize_int(const IntQuantBand& band, const OutputFormat& format, std::span<std::byte> out);

}  // namespace shardwise::transform
