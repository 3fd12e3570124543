// The AVX2 versions of the transform kernels' inner loops (isa.hpp), compiled for AVX2 function by
// function so that the rest of the build targets any x86-64; used only where best_isa() says so.
// Same bytes as the portable code: the same IEEE float32 multiply (no flush-to-zero: MXCSR keeps
// its default) and the same integer rounding, eight or thirty-two elements at a time.

#include <shardwise/transform/isa.hpp>

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SHARDWISE_HAVE_AVX2 1
#include <immintrin.h>
#endif

namespace shardwise::transform {

#if SHARDWISE_HAVE_AVX2

bool isa_available(Isa isa) noexcept {
  if (isa == Isa::portable) return true;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") != 0;
}

namespace {

#define SHARDWISE_AVX2 __attribute__((target("avx2")))

// Eight E4M3 codes (zero-extended to 32 bits) -> eight float32 bits, exactly as e4m3_to_f32:
// a normal code's fields moved into a float's (exponent rebased by 127 - 7), a subnormal one
// (magnitude < 8: m x 2^-9) converted as an integer and scaled exactly, the NaN code (0x7F) a
// quiet NaN; the sign put back on all.
SHARDWISE_AVX2 inline __m256i decode_e4m3(__m256i codes) noexcept {
  const __m256i magnitude = _mm256_and_si256(codes, _mm256_set1_epi32(0x7F));
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(codes, _mm256_set1_epi32(0x80)), 24);
  const __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(magnitude, 20), _mm256_set1_epi32(120 << 23));
  const __m256i subnormal =
      _mm256_castps_si256(_mm256_mul_ps(_mm256_cvtepi32_ps(magnitude), _mm256_set1_ps(0x1p-9f)));
  const __m256i is_subnormal = _mm256_cmpgt_epi32(_mm256_set1_epi32(8), magnitude);
  const __m256i is_nan = _mm256_cmpeq_epi32(magnitude, _mm256_set1_epi32(0x7F));
  __m256i bits = _mm256_blendv_epi8(normal, subnormal, is_subnormal);
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7FC00000), is_nan);
  return _mm256_or_si256(bits, sign);
}

// Eight float32 -> BF16 in the low half of each 32-bit lane, as f32_to_bf16.
SHARDWISE_AVX2 inline __m256i round_to_bf16(__m256 value, __m256i nan_bits) noexcept {
  const __m256i bits = _mm256_castps_si256(value);
  const __m256i lowest_kept = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), lowest_kept), 16);
  const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF)),
                                            _mm256_set1_epi32(0x7F800000));
  return _mm256_blendv_epi8(rounded, nan_bits, is_nan);
}

SHARDWISE_AVX2 inline __m256i product_bf16(const std::uint8_t* codes, __m256 scale,
                                           __m256i nan_bits) noexcept {
  const __m128i eight = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes));  // 8 bytes, unaligned
  const __m256 decoded = _mm256_castsi256_ps(decode_e4m3(_mm256_cvtepu8_epi32(eight)));
  return round_to_bf16(_mm256_mul_ps(decoded, scale), nan_bits);
}

// Eight integer codes -> BF16 of f32(code - zero) x scale (cvtepi32_ps is exact below 2^24).
SHARDWISE_AVX2 inline __m256i int_product_bf16(const std::uint8_t* codes, __m256i zeros, __m256 scale,
                                               __m256i nan_bits) noexcept {
  const __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes)));
  return round_to_bf16(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, zeros)), scale), nan_bits);
}

}  // namespace

namespace avx2 {

SHARDWISE_AVX2 void dequantize_run(const std::uint8_t* codes, std::byte* out, std::uint64_t count,
                                   float scale, std::uint16_t nan_bits) noexcept {
  const __m256 scales = _mm256_set1_ps(scale);
  const __m256i nans = _mm256_set1_epi32(nan_bits);
  std::uint64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256i low = product_bf16(codes + i, scales, nans);
    const __m256i high = product_bf16(codes + i + 8, scales, nans);
    // packus interleaves the 128-bit lanes (low 0-3, high 0-3, low 4-7, high 4-7): put them in order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(low, high), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * i), packed);
  }
  for (; i < count; ++i) {
    const std::uint16_t value = f32_to_bf16(e4m3_to_f32(codes[i]) * scale, nan_bits);
    std::memcpy(out + 2 * i, &value, 2);
  }
}

SHARDWISE_AVX2 void dequantize_int_run(const std::uint8_t* codes, std::byte* out, std::uint64_t count,
                                       std::int32_t zero, float scale, std::uint16_t nan_bits) noexcept {
  const __m256 scales = _mm256_set1_ps(scale);
  const __m256i zeros = _mm256_set1_epi32(zero);
  const __m256i nans = _mm256_set1_epi32(nan_bits);
  std::uint64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256i low = int_product_bf16(codes + i, zeros, scales, nans);
    const __m256i high = int_product_bf16(codes + i + 8, zeros, scales, nans);
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(low, high), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * i), packed);
  }
  for (; i < count; ++i) {
    const std::uint16_t value =
        f32_to_bf16(static_cast<float>(static_cast<std::int32_t>(codes[i]) - zero) * scale, nan_bits);
    std::memcpy(out + 2 * i, &value, 2);
  }
}

SHARDWISE_AVX2 void expand_fp4(const std::uint8_t* in, std::uint8_t* out, std::uint64_t groups,
                               const std::uint8_t* table_index, const std::uint8_t* tables) noexcept {
  const __m128i nibble = _mm_set1_epi8(0x0F);
  for (std::uint64_t g = 0; g < groups; ++g) {
    const __m128i table =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(tables + 16 * std::uint64_t{table_index[g]}));
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 16 * g));
    const __m128i even = _mm_shuffle_epi8(table, _mm_and_si128(bytes, nibble));
    const __m128i odd = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * g), _mm_unpacklo_epi8(even, odd));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * g + 16), _mm_unpackhi_epi8(even, odd));
  }
}

}  // namespace avx2

#else  // not x86-64: the portable code only

bool isa_available(Isa isa) noexcept { return isa == Isa::portable; }

namespace avx2 {
void dequantize_run(const std::uint8_t*, std::byte*, std::uint64_t, float, std::uint16_t) noexcept {
  __builtin_trap();
}
void expand_fp4(const std::uint8_t*, std::uint8_t*, std::uint64_t, const std::uint8_t*,
                const std::uint8_t*) noexcept {
  __builtin_trap();
}
void dequantize_int_run(const std::uint8_t*, std::byte*, std::uint64_t, std::int32_t, float,
                        std::uint16_t) noexcept {
  __builtin_trap();
}
}  // namespace avx2

#endif

Isa best_isa() noexcept {
  static const Isa best = isa_available(Isa::avx2) ? Isa::avx2 : Isa::portable;
  return best;
}

}  // namespace shardwise::transform
