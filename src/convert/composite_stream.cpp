#include <shardwise/convert/composite_stream.hpp>

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>

namespace shardwise::convert {

CompositeStream::CompositeStream(const plan::Plan& plan, const plan::PlannedTensor& tensor) {
  auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::input, fmt::format("{} (fused output): {}", tensor.name, what));
  };
  if (tensor.composite >= plan.composites.size()) fail("the plan has no such composite");
  const plan::Composite& c = plan.composites[tensor.composite];
  if (c.parts.empty() || c.per_block == 0 || c.parts.size() % c.per_block != 0 || c.dim < 0) {
    fail(fmt::format("{} parts do not make blocks of {}", c.parts.size(), c.per_block));
  }
  per_block_ = c.per_block;
  const auto dim = static_cast<std::size_t>(c.dim);
  const st::Shape& first_shape = c.parts.front().shape;
  if (dim >= first_shape.size()) fail(fmt::format("its parts have no dim {}", c.dim));
  rows_ = st::element_count(std::span(first_shape).first(dim)).value_or(0);
  parts_.reserve(c.parts.size());
  for (const plan::PlannedTensor& part : c.parts) {
    if (part.source >= plan.sources.size() || plan.sources[part.source].file >= plan.input_files.size())
      fail(fmt::format("part {} refers to a source the plan does not have", part.name));
    if (part.companion != plan::kNoCompanion) fail(fmt::format("part {} has a companion", part.name));
    const plan::Source& source = plan.sources[part.source];
    TensorStream stream(source, part);
    if (part.shape.size() != first_shape.size() || part.dtype != tensor.dtype || stream.bytes() != part.bytes)
      fail(fmt::format("part {} ({}{}) does not fit the output's {}", part.name, st::dtype_name(part.dtype),
                       st::shape_text(part.shape), st::dtype_name(tensor.dtype)));
    if (rows_ == 0 || part.bytes % rows_ != 0)
      fail(fmt::format("part {} is not {} whole rows", part.name, rows_));
    parts_.push_back(Part{std::move(stream), source.file, part.source, part.bytes / rows_});
  }
  // Every block must have the same part sizes, position by position, for the block arithmetic.
  row_offsets_.assign(per_block_ + 1, 0);
  for (std::size_t p = 0; p < per_block_; ++p) row_offsets_[p + 1] = row_offsets_[p] + parts_[p].row_bytes;
  for (std::size_t i = per_block_; i < parts_.size(); ++i) {
    if (parts_[i].row_bytes != parts_[i % per_block_].row_bytes)
      fail(fmt::format("part {} has rows of {} bytes where the first block's has {}", c.parts[i].name,
                       parts_[i].row_bytes, parts_[i % per_block_].row_bytes));
  }
  block_row_bytes_ = row_offsets_.back();
  block_bytes_ = block_row_bytes_ * rows_;
  bytes_ = block_bytes_ * (parts_.size() / per_block_);
  if (bytes_ != tensor.bytes)
    fail(fmt::format("planned as {} bytes, but its parts give {}", tensor.bytes, bytes_));
}

CompositeStream::Run CompositeStream::run_at(std::uint64_t offset) const {
  const std::uint64_t block = offset / block_bytes_;
  const std::uint64_t in_block = offset % block_bytes_;
  const std::uint64_t row = in_block / block_row_bytes_;
  const std::uint64_t in_row = in_block % block_row_bytes_;
  const auto next = std::upper_bound(row_offsets_.begin(), row_offsets_.end(), in_row);
  const auto p = static_cast<std::size_t>(next - row_offsets_.begin()) - 1;
  const std::size_t part = static_cast<std::size_t>(block) * per_block_ + p;
  return Run{part, row * parts_[part].row_bytes + (in_row - row_offsets_[p]), row_offsets_[p + 1] - in_row};
}

void CompositeStream::read(std::span<const InputFile> inputs, std::uint64_t offset, std::span<std::byte> out,
                           std::span<std::byte> scratch) const {
  if (offset > bytes_ || out.size() > bytes_ - offset)
    throw std::invalid_argument("CompositeStream::read: past end");
  std::size_t pos = 0;
  while (pos < out.size()) {
    const Run run = run_at(offset + pos);
    const Part& part = parts_[run.part];
    if (part.file >= inputs.size()) throw std::invalid_argument("CompositeStream::read: no such input");
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(run.length, out.size() - pos));
    part.stream.read(inputs[part.file].fd, *inputs[part.file].path, run.offset, out.subspan(pos, n), scratch);
    pos += n;
  }
}

std::vector<std::uint64_t> CompositeStream::piece_bounds(std::uint64_t max_piece) const {
  max_piece = std::max<std::uint64_t>(8, max_piece / 8 * 8);
  std::vector<std::uint64_t> bounds{0};
  if (bytes_ == 0) {
    bounds.push_back(0);
    return bounds;
  }
  if (rows_ == 1) {
    // Along dim 0 (or stacked): each part's own pieces, one after the other.
    std::uint64_t base = 0;
    for (const Part& part : parts_) {
      const std::vector<std::uint64_t> own = part.stream.piece_bounds(max_piece);
      for (std::size_t i = 1; i < own.size(); ++i) {
        if (own[i] != own[i - 1]) bounds.push_back(base + own[i]);
      }
      base += part.row_bytes;
    }
    if (bounds.back() != bytes_) bounds.push_back(bytes_);
    return bounds;
  }
  for (std::uint64_t block = 0; block * block_bytes_ < bytes_; ++block) {
    const std::uint64_t base = block * block_bytes_;
    if (block_row_bytes_ <= max_piece) {
      const std::uint64_t per_piece = max_piece / block_row_bytes_;
      for (std::uint64_t r = per_piece; r < rows_; r += per_piece)
        bounds.push_back(base + r * block_row_bytes_);
    } else {
      for (std::uint64_t r = 0; r < rows_; ++r) {
        const std::uint64_t row = base + r * block_row_bytes_;
        for (std::uint64_t cut = max_piece; cut < block_row_bytes_; cut += max_piece)
          bounds.push_back(row + cut);
        if (r + 1 < rows_) bounds.push_back(row + block_row_bytes_);
      }
    }
    bounds.push_back(base + block_bytes_);
  }
  return bounds;
}

std::size_t CompositeStream::source_at(std::uint64_t offset) const {
  return parts_[run_at(std::min(offset, bytes_ == 0 ? 0 : bytes_ - 1)).part].source;
}

std::uint64_t expected_xxh3(const CompositeStream& stream, std::span<const InputFile> inputs,
                            std::span<std::byte> buffer, std::span<std::byte> scratch) {
  const std::size_t step = buffer.size() / 8 * 8;
  if (step == 0) throw std::invalid_argument("expected_xxh3: buffer too small");
  output::Hasher hasher;
  for (std::uint64_t done = 0; done < stream.bytes();) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(step, stream.bytes() - done));
    stream.read(inputs, done, buffer.first(n), scratch);
    hasher.update(buffer.first(n));
    done += n;
  }
  return hasher.digest();
}

}  // namespace shardwise::convert
