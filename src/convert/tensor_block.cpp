// TensorStream for the block-scaled transforms: the output is computed band by band (whole
// block-rows, or single rows where the transform allows it) from the source slice and its
// companion slice, each read as stored through a plain TensorStream. Memory stays bounded: a band's
// inputs and, when a range cuts a band, one band of output.

#include <shardwise/convert/tensor_stream.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/transform/kernels.hpp>

namespace shardwise::convert {

namespace {

constexpr std::uint64_t kBandInputBytes =
    8u << 20;                          // input bytes computed at once, at most (one band more when larger)
constexpr std::uint64_t kBlock = 128;  // the re-quantised block, both ways
constexpr std::uint64_t kGroup = 32;   // FP4 elements per E8M0 scale

bool is_block(plan::Cast cast) {
  return cast == plan::Cast::dequantize || cast == plan::Cast::requantize_fp4_weight ||
         cast == plan::Cast::requantize_fp4_scale;
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
// a conversion's CPU).
class Band {
 public:
  explicit Band(std::size_t size) : bytes_(std::make_unique_for_overwrite<std::byte[]>(size)), size_(size) {}
  std::span<std::byte> span() const noexcept { return {bytes_.get(), size_}; }

 private:
  std::unique_ptr<std::byte[]> bytes_;
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
    if (scale.shape.size() != 2) fail(fmt::format("its companion {} does not have 2 dims", scale.name));
    block->scale.emplace(raw(scale, companion->slice));
    block->scale_file = scale.file;
    block->scale_dtype = scale.dtype;
    block->scale_cols = sliced(scale, companion->slice)[1];
    block->block_rows = companion->block_rows;
    block->block_cols = companion->block_cols;
    block->nan = companion->nan_bits;
  }
  switch (tensor.cast) {
    case plan::Cast::dequantize: {
      block->rows = shape[0];
      block->cols = shape[1];
      const st::Shape scale_shape = sliced(plan.sources[companion->source], companion->slice);
      if (source.dtype != st::DType::F8_E4M3 || tensor.dtype != st::DType::BF16 || tensor.shape != shape ||
          (block->scale_dtype != st::DType::F8_E8M0 && block->scale_dtype != st::DType::F32) ||
          block->block_rows == 0 || block->block_cols == 0 ||
          scale_shape[0] != ceil_div(block->rows, block->block_rows) ||
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
    case plan::Cast::dequantize: {
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
    if (b.cast == plan::Cast::dequantize) limit = std::min(limit, (first / b.block_rows + 1) * b.block_rows);
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
