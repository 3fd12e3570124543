#pragma once
// Test inputs for the FP4 -> E4M3 re-quantisation shared by its reference test and the comparison
// of its AVX2 and portable kernels.

#include <cstddef>
#include <vector>

namespace shardwise::test {

// FP4 weights (two codes a byte, [rows, cols / 2]) with E8M0 scales per 1 x 32 ([rows, cols / 32]).
struct Fp4Weights {
  std::size_t rows = 0, cols = 0;
  std::vector<std::byte> packed, scale;
};

// 128 rows, 256 blocks of 128 columns. Block bi has largest scale code bi (255: NaN); its 512
// groups (row r, group g: slot 4r + g % 4) hold bi, bi - 1, ..., 0, then repeat, and their bytes
// are j * 0x11 with the slot's low 4 bits in the high nibble, so that every scale code a <= bi
// meets every FP4 code in both nibbles.
inline Fp4Weights every_scale_under_every_largest() {
  Fp4Weights w{128, 128 * 256, {}, {}};
  w.packed.resize(w.rows * w.cols / 2);
  w.scale.resize(w.rows * w.cols / 32);
  for (std::size_t r = 0; r < w.rows; ++r) {
    for (std::size_t group = 0; group < w.cols / 32; ++group) {
      const std::size_t block = group / 4, slot = 4 * r + group % 4;
      w.scale[r * (w.cols / 32) + group] = std::byte(block - slot % (block + 1));
      for (std::size_t j = 0; j < 16; ++j) {
        w.packed[r * (w.cols / 2) + group * 16 + j] = std::byte((j * 0x11) ^ ((slot % 16) << 4));
      }
    }
  }
  return w;
}

}  // namespace shardwise::test
