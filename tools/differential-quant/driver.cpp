// The dequantisation kernels (src/transform: dequantize_int, dequantize_fp8) on raw tensors in
// files, for tools/differential-quant/run: a development aid, never built by CMake.
//
//   driver int PACKING BITS IN OUT GROUPS GROUP_SIZE SCALE_DTYPE OUT_DTYPE BAND QWEIGHT QZEROS SCALES G_IDX|-
//   OUT driver fp8 ROWS COLS SCALE_DTYPE BLOCK_ROWS BLOCK_COLS SCALE_COLS OUT_DTYPE BAND WEIGHT SCALE OUT
//
// PACKING gptq|gptq_v2|awq; dtypes by safetensors name; BLOCK_* 0 for a whole dimension; BAND the
// rows of W computed per call (each band's input slices cut here as the engine would read them).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/transform/dequantize_int.hpp>
#include <shardwise/transform/fp8_scales.hpp>

using namespace shardwise;
using namespace shardwise::transform;

namespace {

std::vector<std::byte> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  for (std::size_t k = 0; k < chars.size(); ++k) bytes[k] = std::byte(static_cast<unsigned char>(chars[k]));
  return bytes;
}

void write_all(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::uint64_t number(const char* text) { return std::strtoull(text, nullptr, 10); }
st::DType dtype(const char* text) { return *st::parse_dtype(text); }

// rows x [begin, end) columns of a row-major matrix of `cols` elements of `size` bytes.
std::vector<std::byte> columns(const std::vector<std::byte>& m, std::uint64_t cols, std::size_t size,
                               IndexRange rows, IndexRange range) {
  std::vector<std::byte> out;
  for (std::uint64_t r = rows.begin; r < rows.end; ++r) {
    const std::byte* first = m.data() + (r * cols + range.begin) * size;
    out.insert(out.end(), first, first + range.size() * size);
  }
  return out;
}

int run_int(char** argv) {
  const std::string packing_name = argv[2];
  IntQuant quant;
  quant.packing = packing_name == "awq"       ? IntPacking::awq
                  : packing_name == "gptq_v2" ? IntPacking::gptq_v2
                                              : IntPacking::gptq;
  quant.bits = static_cast<unsigned>(number(argv[3]));
  quant.in = number(argv[4]), quant.out = number(argv[5]), quant.groups = number(argv[6]),
  quant.group_size = number(argv[7]);
  const st::DType scale_dtype = dtype(argv[8]);
  const OutputFormat format{dtype(argv[9]), Bf16Nan::canonical};
  const std::uint64_t band_rows = number(argv[10]);
  const auto qweight = read_all(argv[11]), qzeros = read_all(argv[12]), scales = read_all(argv[13]);
  const bool has_g_idx = std::string(argv[14]) != "-";
  const auto g_idx = has_g_idx ? read_all(argv[14]) : std::vector<std::byte>{};
  const bool awq = quant.packing == IntPacking::awq;
  const std::uint64_t per_word = 32 / quant.bits;
  const std::uint64_t codes_rows = awq ? quant.in : quant.in / per_word,
                      codes_cols = awq ? quant.out / 8 : quant.out;
  std::vector<std::byte> out(2 * quant.out * quant.in);
  for (std::uint64_t first = 0; first < quant.out; first += band_rows) {
    const IntTile tile{first, std::min(band_rows, quant.out - first), 0, quant.in};
    const IntTileSources s = int_tile_sources(quant, tile, has_g_idx);
    const auto band_qweight = columns(qweight, codes_cols, 4, s.codes_rows, s.codes_cols);
    const auto band_qzeros = columns(qzeros, quant.out / per_word, 4, {0, quant.groups}, s.zeros_cols);
    const auto band_scales =
        columns(scales, quant.out, st::dtype_bits(scale_dtype) / 8, {0, quant.groups}, s.scales_cols);
    IntQuantBand band{quant,        tile,
                      band_qweight, band_qzeros,
                      band_scales,  scale_dtype,
                      g_idx,        g_idx.size() == 8 * quant.in ? st::DType::I64 : st::DType::I32};
    dequantize_int(band, format, std::span(out).subspan(2 * first * quant.in, 2 * tile.out_count * quant.in));
  }
  (void)codes_rows;
  write_all(argv[15], out);
  return 0;
}

int run_fp8(char** argv) {
  const std::uint64_t rows = number(argv[2]), cols = number(argv[3]);
  const st::DType scale_dtype = dtype(argv[4]);
  const std::uint64_t block_rows = number(argv[5]), block_cols = number(argv[6]),
                      scale_cols = number(argv[7]);
  const OutputFormat format{dtype(argv[8]), Bf16Nan::canonical};
  const std::uint64_t band_rows = number(argv[9]);
  const auto weight = read_all(argv[10]), scale = read_all(argv[11]);
  const ScaleGrid grid{block_rows == 0 ? ScaleGrid::kWhole : block_rows,
                       block_cols == 0 ? ScaleGrid::kWhole : block_cols};
  const std::size_t esize = st::dtype_bits(scale_dtype) / 8;
  std::vector<std::byte> out(2 * rows * cols);
  for (std::uint64_t first = 0; first < rows; first += band_rows) {
    const std::uint64_t count = std::min(band_rows, rows - first);
    const IndexRange need = fp8_band_scale_rows(grid, first, count);
    const Fp8Band band{std::span(weight).subspan(first * cols, count * cols),
                       std::span(scale).subspan(need.begin * scale_cols * esize,
                                                (need.end - need.begin) * scale_cols * esize),
                       scale_dtype,
                       grid,
                       first,
                       count,
                       cols,
                       scale_cols};
    dequantize_fp8(band, format, std::span(out).subspan(2 * first * cols, 2 * count * cols));
  }
  write_all(argv[12], out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 16 && std::string(argv[1]) == "int") return run_int(argv);
    if (argc == 13 && std::string(argv[1]) == "fp8") return run_fp8(argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "driver: %s\n", e.what());
    return e.exit_code();
  }
  std::fprintf(stderr, "usage: see the head of driver.cpp\n");
  return 2;
}
