// TensorStream for the block-scaled transforms: the output is computed band by band (whole
// block-rows, or single rows where the transform allows it) from the source slice and its
// companion slice, each read as stored through a plain TensorStream. Memory stays bounded: a band's
// inputs and, when a range cuts a band, one band of output.

#include <shardwise/convert/tensor_stream.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/transform/dequantize_int.hpp>
#include <shardwise/transform/fp8_scales.hpp>
#include <shardwise/transform/kernels.hpp>

namespace shardwise::convert {

namespace {

constexpr std::uint64_t kBandInputBytes =
    8u << 20;                          // input bytes computed at once, at most (one band more when larger)
constexpr std::uint64_t kBlock = 128;  // the re-quantised block, both ways
constexpr std::uint64_t kGroup = 32;   // FP4 elements per E8M0 scale

bool is_block(plan::Cast cast) {
  return cast == plan::Cast::dequantize || cast == plan::Cast::requantize_fp4_weight ||
         cast == plan::Cast::requantize_fp4_scale || cast == plan::Cast::dequantize_packed;
}

// A scale of 0, 1 or 2 dims as [rows, columns] ([] and [1] are one scale).
st::Shape as_matrix(const st::Shape& shape) {
  if (shape.size() == 2) return shape;
  if (shape.empty()) return {1, 1};
  if (shape.size() == 1) return {shape[0], 1};
  return {0, 0};
}

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

st::Shape sliced(const plan::Source& source, const plan::Slice& slice) {
  st::Shape shape = source.shape;
  if (!slice.whole() && static_cast<std::size_t>(slice.dim) < shape.size() && slice.begin <= slice.end) {
    shape[static_cast<std::size_t>(slice.dim)] = slice.end - slice.begin;
  }
  return shape;
}

// The bytes of `slice` of `source`, as stored.
TensorStream raw(const plan::Source& source, const plan::Slice& slice) {
  plan::PlannedTensor t;
  t.name = source.name;
  t.dtype = source.dtype;
  t.shape = sliced(source, slice);
  t.bytes = st::byte_size(t.dtype, t.shape).value_or(0);
  t.slice = slice;
  return TensorStream(source, t);
}

// A buffer that the next read or kernel fills whole, so not zeroed first (zeroing it cost ~1% of
// a conversion's CPU). Its memory is kept for the thread's next bands: a fresh allocation of
// megabytes is mapped and page-faulted in again every time, which cost about a fifth of an FP8
// conversion's CPU (bench/README.md, bench/dequantize). A thread keeps as many buffers as it had
// bands alive at once (a band's inputs, at most kBandInputBytes each, and a cut unit).
class Band {
 public:
  explicit Band(std::size_t size) : size_(size) {
    std::vector<Memory>& pool = spare();
    // The smallest spare buffer that holds `size`, else the largest (grown).
    auto best = pool.end();
    for (auto it = pool.begin(); it != pool.end(); ++it) {
      const bool best_fits = best != pool.end() && best->capacity >= size;
      if (it->capacity >= size) {
        if (!best_fits || it->capacity < best->capacity) best = it;
      } else if (best == pool.end() || (!best_fits && it->capacity > best->capacity)) {
        best = it;
      }
    }
    if (best != pool.end()) {
      memory_ = std::move(*best);
      pool.erase(best);
    }
    if (memory_.capacity < size) memory_ = {std::make_unique_for_overwrite<std::byte[]>(size), size};
  }
  Band(Band&& other) noexcept : memory_(std::move(other.memory_)), size_(other.size_) {
    other.memory_.capacity = 0;
  }
  Band& operator=(Band&&) = delete;
  ~Band() {
    if (memory_.bytes == nullptr) return;
    try {
      spare().push_back(std::move(memory_));
    } catch (...) {  // no room to keep it: freed
    }
  }
  std::span<std::byte> span() const noexcept { return {memory_.bytes.get(), size_}; }

 private:
  struct Memory {
    std::unique_ptr<std::byte[]> bytes;
    std::size_t capacity = 0;
  };
  static std::vector<Memory>& spare() {
    thread_local std::vector<Memory> pool;
    return pool;
  }

  Memory memory_;
  std::size_t size_;
};

}  // namespace

struct TensorStream::Block {
  plan::Cast cast = plan::Cast::dequantize;
  std::optional<TensorStream> source;  // the source slice, as stored
  std::optional<TensorStream> scale;   // the companion slice, as stored (not for requantize_fp4_scale)
  std::optional<std::size_t> scale_file;
  st::DType scale_dtype = st::DType::F8_E8M0;
  std::uint64_t rows = 0;        // of the weight slice (requantize_fp4_scale: of the old scale)
  std::uint64_t cols = 0;        // logical elements of the weight slice
  std::uint64_t scale_cols = 0;  // entries per row of the companion slice
  std::uint64_t block_rows = 1;
  std::uint64_t block_cols = 1;
  std::uint16_t nan = 0xFFFF;
  std::uint64_t out_rows = 0;
  std::uint64_t row_bytes = 0;  // output bytes per output row
  std::uint64_t unit_rows = 1;  // output rows that can only be computed together
  std::uint64_t cap_rows = 1;   // output rows computed at once, at most
  // dequantize: any scale dtype or grid, or F16 output (transform::dequantize_fp8); else
  // dequantize_to_bf16 (DeepSeek's converters: F32 or E8M0 block scales, their NaN bits).
  bool any_scale = false;
  st::DType out_dtype = st::DType::BF16;
  // dequantize_packed: the members (sources), the quantisation.
  const plan::Source* codes = nullptr;
  const plan::Source* zeros = nullptr;
  const plan::Source* scales = nullptr;
  const plan::Source* group_index = nullptr;
  transform::IntQuant quant;
};

TensorStream::TensorStream(const plan::Plan& plan, const plan::PlannedTensor& tensor) {
  if (tensor.source >= plan.sources.size()) {
    throw Error(ErrorKind::input, fmt::format("{}: refers to a source the plan does not have", tensor.name));
  }
  const plan::Source& source = plan.sources[tensor.source];
  if (!is_block(tensor.cast)) {
    *this = TensorStream(source, tensor);
    if (tensor.permutation != plan::kNoPermutation) permute_rows(plan, tensor);
    return;
  }
  const auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::input, fmt::format("{} (from {}): {}", tensor.name, source.name, what));
  };
  if (source.shape.size() != 2) fail("a block-scaled transform needs a source of 2 dims");
  auto block = std::make_shared<Block>();
  block->cast = tensor.cast;
  block->out_dtype = tensor.dtype;
  if (tensor.cast == plan::Cast::dequantize_packed) {
    // The codes are the source; the scales the companion; the zeros and group index beside it.
    if (tensor.companion >= plan.companions.size())
      fail("the planned transform has no companion (its scales)");
    const plan::Companion& c = plan.companions[tensor.companion];
    const auto member = [&](std::size_t index) -> const plan::Source* {
      if (index == plan::kNoSource) return nullptr;
      if (index >= plan.sources.size()) fail("its companion refers to a source the plan does not have");
      return &plan.sources[index];
    };
    block->codes = &source;
    block->scales = member(c.source);
    block->zeros = member(c.zeros);
    block->group_index = member(c.group_index);
    if (block->zeros == nullptr) fail("the planned packed dequantization has no zeros");
    static constexpr transform::IntPacking kPackings[] = {
        transform::IntPacking::gptq, transform::IntPacking::gptq_v2, transform::IntPacking::awq};
    block->quant = transform::IntQuant{kPackings[static_cast<int>(c.packing) % 3],
                                       c.bits,
                                       c.in,
                                       c.out,
                                       block->scales->shape.empty() ? 0 : block->scales->shape[0],
                                       c.group_size};
    if (!tensor.slice.whole() || (tensor.dtype != st::DType::BF16 && tensor.dtype != st::DType::F16) ||
        tensor.shape != st::Shape{c.out, c.in} || source.dtype != st::DType::I32 || c.in == 0 ||
        tensor.bytes != c.out * c.in * 2) {
      fail("the planned packed dequantization does not fit its source");
    }
    // Checks every member's shape against the quantisation (Error(input) naming the numbers).
    const transform::IntTileSources all =
        transform::int_tile_sources(block->quant, {0, c.out, 0, c.in}, block->group_index != nullptr);
    const auto check = [&](const plan::Source& m, transform::IndexRange rows, transform::IndexRange cols) {
      if (m.shape.size() != 2 || m.shape[0] != rows.size() || m.shape[1] != cols.size())
        fail(fmt::format("its member {} {} does not fit the packing", m.name, st::shape_text(m.shape)));
    };
    check(source, all.codes_rows, all.codes_cols);
    check(*block->zeros, {0, block->quant.groups}, all.zeros_cols);
    check(*block->scales, {0, block->quant.groups}, all.scales_cols);
    if (block->group_index != nullptr && block->group_index->shape != st::Shape{c.in})
      fail(fmt::format("its group index {} does not fit the packing", block->group_index->name));
    block->rows = block->out_rows = c.out;
    block->cols = c.in;
    block->row_bytes = c.in * 2;
    // A band's codes, zeros and scales: about in * bits / 8 bytes per output row.
    block->cap_rows =
        std::max<std::uint64_t>(1, kBandInputBytes / std::max<std::uint64_t>(1, c.in * c.bits / 8));
    cast_ = tensor.cast;
    out_segment_ = tensor.bytes;
    segments_ = 1;
    block_ = std::move(block);
    return;
  }
  block->source.emplace(raw(source, tensor.slice));
  const st::Shape shape = sliced(source, tensor.slice);
  const plan::Companion* companion = nullptr;
  if (tensor.cast != plan::Cast::requantize_fp4_scale) {
    if (tensor.companion >= plan.companions.size())
      fail("the planned transform has no companion (block scale)");
    companion = &plan.companions[tensor.companion];
    if (companion->source >= plan.sources.size())
      fail("its companion refers to a source the plan does not have");
    const plan::Source& scale = plan.sources[companion->source];
    if (scale.shape.size() != 2 && !(tensor.cast == plan::Cast::dequantize && scale.shape.size() < 2))
      fail(fmt::format("its companion {} does not have 2 dims", scale.name));
    block->scale.emplace(raw(scale, companion->slice));
    block->scale_file = scale.file;
    block->scale_dtype = scale.dtype;
    block->scale_cols = as_matrix(sliced(scale, companion->slice))[1];
    block->block_rows = companion->block_rows;
    block->block_cols = companion->block_cols;
    block->nan = companion->nan_bits;
  }
  switch (tensor.cast) {
    case plan::Cast::dequantize: {
      block->rows = shape[0];
      block->cols = shape[1];
      const st::Shape scale_shape = as_matrix(sliced(plan.sources[companion->source], companion->slice));
      const bool classic = (block->scale_dtype == st::DType::F8_E8M0 || block->scale_dtype == st::DType::F32);
      block->any_scale = !classic || tensor.dtype != st::DType::BF16 ||
                         block->block_rows == plan::kWholeBlock || block->block_cols == plan::kWholeBlock;
      if (source.dtype != st::DType::F8_E4M3 ||
          (tensor.dtype != st::DType::BF16 && tensor.dtype != st::DType::F16) || tensor.shape != shape ||
          !transform::is_scale_dtype(block->scale_dtype) || block->block_rows == 0 ||
          block->block_cols == 0 || scale_shape[0] != ceil_div(block->rows, block->block_rows) ||
          scale_shape[1] != ceil_div(block->cols, block->block_cols)) {
        fail("the planned dequantization does not fit its source and block scale");
      }
      block->out_rows = block->rows;
      block->row_bytes = block->cols * 2;
      block->cap_rows = std::max<std::uint64_t>(1, kBandInputBytes / std::max<std::uint64_t>(1, block->cols));
      break;
    }
    case plan::Cast::requantize_fp4_weight: {
      block->rows = shape[0];
      block->cols = shape[1] * 2;
      const st::Shape scale_shape = sliced(plan.sources[companion->source], companion->slice);
      if (source.dtype != st::DType::I8 || tensor.dtype != st::DType::F8_E4M3 ||
          tensor.shape != st::Shape{block->rows, block->cols} || block->rows % kBlock != 0 ||
          block->cols % kBlock != 0 || block->scale_dtype != st::DType::F8_E8M0 ||
          scale_shape != st::Shape{block->rows, block->cols / kGroup}) {
        fail("the planned FP4 -> FP8 re-quantisation does not fit its source and scale");
      }
      block->out_rows = block->rows;
      block->row_bytes = block->cols;
      block->unit_rows = kBlock;
      block->cap_rows =
          std::max<std::uint64_t>(kBlock, kBandInputBytes / (block->cols / 2) / kBlock * kBlock);
      break;
    }
    case plan::Cast::requantize_fp4_scale: {
      block->rows = shape[0];
      block->cols = shape[1] * kGroup;
      if (source.dtype != st::DType::F8_E8M0 || tensor.dtype != st::DType::F8_E8M0 ||
          block->rows % kBlock != 0 || block->cols % kBlock != 0 ||
          tensor.shape != st::Shape{block->rows / kBlock, block->cols / kBlock}) {
        fail("the planned re-quantised scale does not fit its source");
      }
      block->out_rows = block->rows / kBlock;
      block->row_bytes = block->cols / kBlock;
      block->cap_rows = std::max<std::uint64_t>(1, kBandInputBytes / (kBlock * shape[1]));
      break;
    }
    default:
      break;
  }
  if (block->out_rows * block->row_bytes != tensor.bytes) {
    fail(fmt::format("planned as {} bytes, but its transform gives {}", tensor.bytes,
                     block->out_rows * block->row_bytes));
  }
  cast_ = tensor.cast;
  out_segment_ = tensor.bytes;
  segments_ = 1;
  block_ = std::move(block);
}

std::optional<std::size_t> TensorStream::companion_file() const noexcept {
  return block_ ? block_->scale_file : std::nullopt;
}

bool TensorStream::needs_input_files() const noexcept {
  return block_ && block_->cast == plan::Cast::dequantize_packed;
}

// Output rows [row, row + n) into `out`; n is a multiple of unit_rows (or reaches the end), and a
// dequantization's rows lie within one block-row.
void TensorStream::compute_band(int fd, const std::string& path, std::uint64_t row, std::span<std::byte> out,
                                std::span<std::byte> scratch, CompanionInput companion) const {
  const Block& b = *block_;
  const std::uint64_t n = out.size() / b.row_bytes;
  const auto read_scale = [&](std::uint64_t offset, std::span<std::byte> into) {
    if (companion.fd < 0 || companion.path == nullptr)
      throw std::invalid_argument("TensorStream::read: no companion input");
    b.scale->read(companion.fd, *companion.path, offset, into, scratch);
  };
  switch (b.cast) {
    case plan::Cast::dequantize_packed:
      compute_packed_band(fd, path, row, out, scratch, companion);
      return;
    case plan::Cast::dequantize: {
      if (b.any_scale) {
        const Band weight(n * b.cols);
        b.source->read(fd, path, row * b.cols, weight.span(), scratch);
        const transform::ScaleGrid grid{b.block_rows, b.block_cols};
        const transform::IndexRange rows = transform::fp8_band_scale_rows(grid, row, n);
        const std::uint64_t width = st::dtype_bits(b.scale_dtype) / 8;
        const Band scale(rows.size() * b.scale_cols * width);
        read_scale(rows.begin * b.scale_cols * width, scale.span());
        const transform::OutputFormat format{b.out_dtype, static_cast<transform::Bf16Nan>(b.nan)};
        transform::dequantize_fp8(
            {weight.span(), scale.span(), b.scale_dtype, grid, row, n, b.cols, b.scale_cols}, format, out);
        return;
      }
      const Band weight(n * b.cols);
      b.source->read(fd, path, row * b.cols, weight.span(), scratch);
      const std::uint64_t width = st::dtype_bits(b.scale_dtype) / 8;
      const Band scale(b.scale_cols * width);
      read_scale(row / b.block_rows * b.scale_cols * width, scale.span());
      transform::dequantize_to_bf16(
          {weight.span(), scale.span(), b.scale_dtype, n, b.cols, b.scale_cols, b.block_rows, b.block_cols},
          static_cast<transform::Bf16Nan>(b.nan), out);
      return;
    }
    case plan::Cast::requantize_fp4_weight: {
      const Band weight(n * b.cols / 2);
      b.source->read(fd, path, row * b.cols / 2, weight.span(), scratch);
      const Band scale(n * b.cols / kGroup);
      read_scale(row * b.cols / kGroup, scale.span());
      const Band new_scale(n / kBlock * (b.cols / kBlock));
      transform::requantize_fp4_to_fp8(weight.span(), scale.span(), n, b.cols, out, new_scale.span());
      return;
    }
    case plan::Cast::requantize_fp4_scale: {
      const std::uint64_t per_row = b.cols / kGroup;  // old scale entries per source row
      const Band scale(n * kBlock * per_row);
      b.source->read(fd, path, row * kBlock * per_row, scale.span(), scratch);
      transform::requantize_fp4_scale(scale.span(), n * kBlock, b.cols, out);
      return;
    }
    default:
      throw std::logic_error("TensorStream::compute_band: not a block-scaled transform");
  }
}

void TensorStream::read_block(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                              std::span<std::byte> scratch, CompanionInput companion) const {
  const Block& b = *block_;
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::uint64_t at = offset + pos;
    const std::uint64_t first = at / b.row_bytes / b.unit_rows * b.unit_rows;
    // Rows computed together: a dequantization stays within a block-row.
    std::uint64_t limit = std::min(b.out_rows, first + b.cap_rows);
    if (b.cast == plan::Cast::dequantize && !b.any_scale)
      limit = std::min(limit, (first / b.block_rows + 1) * b.block_rows);
    const std::uint64_t start = first * b.row_bytes;
    if (at == start) {
      std::uint64_t n = std::min<std::uint64_t>(limit - first, (out.size() - pos) / b.row_bytes);
      if (first + n < b.out_rows) n = n / b.unit_rows * b.unit_rows;
      if (n > 0) {
        compute_band(fd, path, first, out.subspan(pos, n * b.row_bytes), scratch, companion);
        pos += n * b.row_bytes;
        continue;
      }
    }
    // The range cuts a unit: compute it whole, keep the part asked for.
    const std::uint64_t n = std::min(b.unit_rows, b.out_rows - first);
    const Band unit(n * b.row_bytes);
    compute_band(fd, path, first, unit.span(), scratch, companion);
    const std::size_t take = std::min<std::size_t>(unit.span().size() - (at - start), out.size() - pos);
    std::memcpy(out.data() + pos, unit.span().data() + (at - start), take);
    pos += take;
  }
}

// Rows [row, row + n) of a packed dequantization: the members' slices int_tile_sources names, each
// read as stored from its own file (the codes' columns of the band, every group's zeros and scales
// of those columns, the whole group index), then the kernel.
void TensorStream::compute_packed_band(int fd, const std::string& path, std::uint64_t row,
                                       std::span<std::byte> out, std::span<std::byte> scratch,
                                       CompanionInput companion) const {
  const Block& b = *block_;
  const std::uint64_t n = out.size() / b.row_bytes;
  const transform::IntTile tile{row, n, 0, b.quant.in};
  const transform::IntTileSources need = transform::int_tile_sources(b.quant, tile, b.group_index != nullptr);
  // Columns [range) of a member, all its rows.
  const auto read_columns = [&](const plan::Source& member, transform::IndexRange range, int member_fd,
                                const std::string& member_path) {
    const plan::Slice slice = member.shape.size() == 2 ? plan::Slice{1, range.begin, range.end}
                                                       : plan::Slice{0, range.begin, range.end};
    const TensorStream stream = raw(member, slice);
    Band bytes(stream.bytes());
    stream.read(member_fd, member_path, 0, bytes.span(), scratch);
    return bytes;
  };
  const auto file_of = [&](const plan::Source& member) -> const io::ReadOnlyFile& {
    if (member.file >= companion.files.size())
      throw std::invalid_argument("TensorStream::read: no input file for a packed member");
    return companion.files[member.file];
  };
  if (need.codes_rows.begin != 0 || need.codes_rows.end != b.codes->shape[0])
    throw std::logic_error("compute_packed_band: a band reads every packed row");
  const Band codes = read_columns(*b.codes, need.codes_cols, fd, path);
  const io::ReadOnlyFile& zf = file_of(*b.zeros);
  const Band zeros = read_columns(*b.zeros, need.zeros_cols, zf.fd(), zf.path());
  const io::ReadOnlyFile& sf = file_of(*b.scales);
  const Band scales = read_columns(*b.scales, need.scales_cols, sf.fd(), sf.path());
  std::optional<Band> group_index;
  if (b.group_index != nullptr) {
    const io::ReadOnlyFile& gf = file_of(*b.group_index);
    group_index.emplace(read_columns(*b.group_index, need.group_index, gf.fd(), gf.path()));
  }
  transform::IntQuantBand band{
      b.quant,
      tile,
      codes.span(),
      zeros.span(),
      scales.span(),
      b.scales->dtype,
      group_index ? std::span<const std::byte>(group_index->span()) : std::span<const std::byte>(),
      b.group_index != nullptr ? b.group_index->dtype : st::DType::I32};
  transform::dequantize_int(band, transform::OutputFormat{b.out_dtype, transform::Bf16Nan::canonical}, out);
}

std::vector<std::uint64_t> TensorStream::block_bounds(std::uint64_t max_piece) const {
  const Block& b = *block_;
  const std::uint64_t unit = b.unit_rows * b.row_bytes;
  const std::uint64_t step = unit <= max_piece ? max_piece / unit * unit : max_piece;
  std::vector<std::uint64_t> bounds{0};
  for (std::uint64_t cut = step; cut < bytes(); cut += step) bounds.push_back(cut);
  bounds.push_back(bytes());
  return bounds;
}

}  // namespace shardwise::convert
