#include <shardwise/convert/tensor_stream.hpp>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/numeric.hpp>
#include <shardwise/output/checksum.hpp>

#include <shardwise/core/io.hpp>

namespace shardwise::convert {

namespace {

// Rows of a strided slice whose gaps are at most this many bytes are read several at a time and
// gathered in memory: below it, the extra bytes cost less than one more pread call per row.
constexpr std::uint64_t kMaxGatherGap = 16 * 1024;

std::uint64_t source_bytes_per_output_byte(const plan::Source& source, const plan::PlannedTensor& tensor) {
  auto fail = [&](std::string_view wanted) {
    throw Error(ErrorKind::input,
                fmt::format("{} (from {}): the planned cast needs a {} source written as {}, "
                            "but the source is {} and the output {}",
                            tensor.name, source.name, wanted, "BF16", st::dtype_name(source.dtype),
                            st::dtype_name(tensor.dtype)));
  };
  switch (tensor.cast) {
    case plan::Cast::none:
      if (source.dtype != tensor.dtype) {
        throw Error(
            ErrorKind::input,
            fmt::format("{} (from {}): planned as {} without a cast, but the source is {}", tensor.name,
                        source.name, st::dtype_name(tensor.dtype), st::dtype_name(source.dtype)));
      }
      return 1;
    case plan::Cast::f16_to_bf16:
      if (source.dtype != st::DType::F16 || tensor.dtype != st::DType::BF16) fail("F16");
      return 1;
    case plan::Cast::f32_to_bf16:
      if (source.dtype != st::DType::F32 || tensor.dtype != st::DType::BF16) fail("F32");
      return 2;
    case plan::Cast::dequantize:
    case plan::Cast::requantize_fp4_weight:
    case plan::Cast::requantize_fp4_scale:
    case plan::Cast::dequantize_packed:
      throw Error(ErrorKind::input,
                  fmt::format("{} (from {}): a block-scaled transform needs the plan's companion",
                              tensor.name, source.name));
    case plan::Cast::reinterpret: {
      const unsigned from = st::dtype_bits(source.dtype);
      const unsigned to = st::dtype_bits(tensor.dtype);
      if (from < to || from % to != 0) {
        throw Error(ErrorKind::input,
                    fmt::format("{} (from {}): planned as {} read from a {} source, but {} bits "
                                "cannot be read as {}-bit elements",
                                tensor.name, source.name, st::dtype_name(tensor.dtype),
                                st::dtype_name(source.dtype), from, to));
      }
      return 1;
    }
  }
  throw std::logic_error("unknown cast");
}

// Bytes of `rows` entries of `dim` followed by the trailing dims of `shape`.
std::optional<std::uint64_t> rows_bytes(const plan::Source& source, std::size_t dim, std::uint64_t rows) {
  st::Shape shape(source.shape.begin() + static_cast<std::ptrdiff_t>(dim), source.shape.end());
  shape[0] = rows;
  return st::byte_size(source.dtype, shape);
}

}  // namespace

// A reinterpretation copies the bytes as they are: for the stream it is no cast.
TensorStream::TensorStream(const plan::Source& source, const plan::PlannedTensor& tensor)
    : cast_(tensor.cast == plan::Cast::reinterpret ? plan::Cast::none : tensor.cast) {
  auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::input, fmt::format("{} (from {}): {}", tensor.name, source.name, what));
  };
  ratio_ = source_bytes_per_output_byte(source, tensor);
  const auto whole = st::byte_size(source.dtype, source.shape);
  if (!whole || *whole != source.bytes) {
    fail(fmt::format("the source's shape does not give its {} bytes", source.bytes));
  }
  first_ = source.offset;
  stride_ = source_segment_ = source.bytes;
  const plan::Slice& slice = tensor.slice;
  if (!slice.whole()) {
    const auto dim = static_cast<std::size_t>(slice.dim);
    if (dim >= source.shape.size() || slice.begin > slice.end || slice.end > source.shape[dim]) {
      fail(fmt::format("slice dim{}[{}:{}] is outside the source's shape of {} dims", slice.dim, slice.begin,
                       slice.end, source.shape.size()));
    }
    const auto outer = st::element_count(std::span(source.shape).first(dim));
    const auto row = rows_bytes(source, dim, source.shape[dim]);
    const auto skip = rows_bytes(source, dim, slice.begin);
    const auto taken = rows_bytes(source, dim, slice.end - slice.begin);
    if (!outer || !row || !skip || !taken) fail("the slice does not fall on byte boundaries");
    first_ = source.offset + *skip;
    stride_ = *row;
    source_segment_ = *taken;
    segments_ = *outer;
    // A slice that keeps every row, or has a single outer row, is one contiguous range.
    if (segments_ <= 1 || *taken == *row) {
      source_segment_ = segments_ * *taken;
      stride_ = source_segment_;
      segments_ = 1;
    }
  }
  out_segment_ = source_segment_ / ratio_;
  if (out_segment_ * segments_ != tensor.bytes) {
    fail(fmt::format("planned as {} bytes, but its slice and cast give {}", tensor.bytes,
                     out_segment_ * segments_));
  }
}

std::optional<std::uint64_t> TensorStream::plain_source_offset() const noexcept {
  if (cast_ != plan::Cast::none || block_ || rows_ || segments_ != 1) return std::nullopt;
  return first_;
}

void TensorStream::transform(const std::byte* src, std::byte* dst, std::uint64_t src_bytes) const {
  switch (cast_) {
    case plan::Cast::none:
    case plan::Cast::reinterpret:
      std::memcpy(dst, src, src_bytes);
      return;
    case plan::Cast::f16_to_bf16:
      convert_f16_to_bf16(src, dst, src_bytes / 2);
      return;
    case plan::Cast::f32_to_bf16:
      convert_f32_to_bf16(src, dst, src_bytes / 4);
      return;
    default:
      throw std::logic_error("TensorStream::transform: not an element cast");
  }
}

void TensorStream::read(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                        std::span<std::byte> scratch, CompanionInput companion) const {
  if (scratch.size() < kMinScratchBytes) throw std::invalid_argument("TensorStream::read: scratch too small");
  if (offset > bytes() || out.size() > bytes() - offset)
    throw std::invalid_argument("TensorStream::read: past end");
  if (block_) {
    read_block(fd, path, offset, out, scratch, companion);
    return;
  }
  if (rows_) {
    read_rows(fd, path, offset, out, scratch);
    return;
  }
  if (cast_ != plan::Cast::none && (offset % 2 != 0 || out.size() % 2 != 0)) {
    throw std::invalid_argument("TensorStream::read: a cast needs whole elements");
  }
  const bool gather =
      segments_ > 1 && stride_ - source_segment_ <= kMaxGatherGap && stride_ <= scratch.size();
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::uint64_t at = offset + pos;
    const std::uint64_t segment = at / out_segment_;
    const std::uint64_t in_segment = at % out_segment_;
    const std::size_t remaining = out.size() - pos;
    if (gather && in_segment == 0 && remaining >= out_segment_) {
      pos += read_gathered(fd, path, segment, out.subspan(pos), scratch);
    } else {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(out_segment_ - in_segment, remaining));
      read_direct(fd, path, segment, in_segment, out.subspan(pos, n), scratch);
      pos += n;
    }
  }
}

void TensorStream::read_direct(int fd, const std::string& path, std::uint64_t segment,
                               std::uint64_t in_segment, std::span<std::byte> out,
                               std::span<std::byte> scratch) const {
  const std::uint64_t from = first_ + segment * stride_ + in_segment * ratio_;
  if (cast_ == plan::Cast::none) {
    io::pread_exact(fd, path, from, out);
    return;
  }
  const std::size_t chunk = scratch.size() / 4 * 4;  // whole source elements
  std::size_t done = 0;                              // output bytes
  while (done < out.size()) {
    const auto source_bytes = std::min<std::size_t>(chunk, (out.size() - done) * ratio_);
    io::pread_exact(fd, path, from + done * ratio_, scratch.first(source_bytes));
    transform(scratch.data(), out.data() + done, source_bytes);
    done += source_bytes / ratio_;
  }
}

std::uint64_t TensorStream::read_gathered(int fd, const std::string& path, std::uint64_t segment,
                                          std::span<std::byte> out, std::span<std::byte> scratch) const {
  const std::uint64_t rows = std::min(
      {out.size() / out_segment_, segments_ - segment, 1 + (scratch.size() - source_segment_) / stride_});
  const std::uint64_t span = (rows - 1) * stride_ + source_segment_;
  io::pread_exact(fd, path, first_ + segment * stride_, scratch.first(span));
  for (std::uint64_t r = 0; r < rows; ++r) {
    transform(scratch.data() + r * stride_, out.data() + r * out_segment_, source_segment_);
  }
  return rows * out_segment_;
}

std::vector<std::uint64_t> TensorStream::piece_bounds(std::uint64_t max_piece) const {
  max_piece = std::max<std::uint64_t>(8, max_piece / 8 * 8);
  std::vector<std::uint64_t> bounds{0};
  if (bytes() == 0) {
    bounds.push_back(0);
    return bounds;
  }
  if (block_) return block_bounds(max_piece);
  if (segments_ > 1 && out_segment_ <= max_piece) {
    const std::uint64_t per_piece = max_piece / out_segment_;
    for (std::uint64_t s = per_piece; s < segments_; s += per_piece) bounds.push_back(s * out_segment_);
    bounds.push_back(bytes());
    return bounds;
  }
  for (std::uint64_t s = 0; s < segments_; ++s) {
    const std::uint64_t base = s * out_segment_;
    for (std::uint64_t cut = max_piece; cut < out_segment_; cut += max_piece) bounds.push_back(base + cut);
    bounds.push_back(base + out_segment_);
  }
  return bounds;
}

std::uint64_t expected_xxh3(const TensorStream& stream, int fd, const std::string& path,
                            std::span<std::byte> buffer, std::span<std::byte> scratch,
                            CompanionInput companion) {
  const std::size_t step = buffer.size() / 8 * 8;
  if (step == 0) throw std::invalid_argument("expected_xxh3: buffer too small");
  output::Hasher hasher;
  for (std::uint64_t done = 0; done < stream.bytes();) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(step, stream.bytes() - done));
    stream.read(fd, path, done, buffer.first(n), scratch, companion);
    hasher.update(buffer.first(n));
    done += n;
  }
  return hasher.digest();
}

}  // namespace shardwise::convert
