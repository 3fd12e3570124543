// TensorStream for a row permutation (rules `transforms:` permute_rope): every output row is one
// source row, copied. The permutation keeps rows within their head, so the rows of one output head
// come from one source head: that head's rows are read at once into the scratch buffer when they
// fit (one pread per head), else row by row. Nothing else is held.

#include <shardwise/convert/tensor_stream.hpp>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/io.hpp>
#include <shardwise/transform/row_permutation.hpp>

namespace shardwise::convert {

struct TensorStream::Rows {
  plan::RowPermutation permutation;
  std::uint64_t rows = 0;           // of the whole source (dim 0)
  std::uint64_t row_bytes = 0;      // of one whole source row
  std::uint64_t source_offset = 0;  // absolute offset of source row 0
  std::uint64_t first_row = 0;      // the permuted tensor's row that output row 0 is (a dim-0 slice)
  std::uint64_t column_offset = 0;  // bytes into a row where the output's part starts (a dim-1 slice)
  std::uint64_t out_row_bytes = 0;  // output bytes per output row

  std::uint64_t head_rows() const { return rows / permutation.heads; }
  std::uint64_t source_row(std::uint64_t permuted) const {
    return transform::rope_source_row(permutation.to, rows, permutation.heads, permuted);
  }
};

void TensorStream::permute_rows(const plan::Plan& plan, const plan::PlannedTensor& tensor) {
  const plan::Source& source = plan.sources[tensor.source];
  const auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::input, fmt::format("{} (from {}): {}", tensor.name, source.name, what));
  };
  if (tensor.permutation >= plan.permutations.size())
    fail("refers to a row permutation the plan does not have");
  if (tensor.cast != plan::Cast::none) fail("a row permutation is planned together with a cast");
  auto rows = std::make_shared<Rows>();
  rows->permutation = plan.permutations[tensor.permutation];
  const std::uint64_t heads = rows->permutation.heads;
  if (source.shape.empty()) fail("a row permutation needs a source with dims");
  rows->rows = source.shape[0];
  if (heads == 0 || rows->rows % heads != 0 || rows->rows / heads % 2 != 0) {
    fail(fmt::format("{} rows cannot be permuted in {} heads of equal halves", rows->rows, heads));
  }
  rows->row_bytes = rows->rows == 0 ? 0 : source.bytes / rows->rows;
  rows->source_offset = source.offset;
  rows->out_row_bytes = rows->row_bytes;
  const plan::Slice& slice = tensor.slice;
  if (!slice.whole()) {
    // The plain constructor checked the slice against the source.
    if (slice.dim == 0) {
      rows->first_row = slice.begin;
    } else if (slice.dim == 1) {
      const std::uint64_t row_elements = source.shape[1] == 0 ? 0 : rows->row_bytes / source.shape[1];
      rows->column_offset = slice.begin * row_elements;
      rows->out_row_bytes = (slice.end - slice.begin) * row_elements;
    } else {
      fail(fmt::format("a row permutation with a slice of dim {} is not supported", slice.dim));
    }
  }
  rows_ = std::move(rows);
  out_segment_ = tensor.bytes;
  segments_ = 1;
}

void TensorStream::read_rows(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                             std::span<std::byte> scratch) const {
  const Rows& r = *rows_;
  if (r.out_row_bytes == 0) return;
  const std::uint64_t head_rows = r.head_rows();
  const std::uint64_t head_bytes = head_rows * r.row_bytes;
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::uint64_t at = offset + pos;
    const std::uint64_t row = at / r.out_row_bytes;  // of the output
    const std::uint64_t within = at % r.out_row_bytes;
    const std::uint64_t permuted = r.first_row + row;
    const std::uint64_t head = permuted / head_rows;
    // Whole output rows of this head that `out` takes, read with their source head at once.
    const std::uint64_t in_head =
        std::min<std::uint64_t>((head + 1) * head_rows - permuted, (out.size() - pos) / r.out_row_bytes);
    if (within == 0 && in_head > 0 && head_bytes <= scratch.size()) {
      io::pread_exact(fd, path, r.source_offset + head * head_bytes, scratch.first(head_bytes));
      for (std::uint64_t k = 0; k < in_head; ++k) {
        const std::uint64_t from = r.source_row(permuted + k) - head * head_rows;
        std::memcpy(out.data() + pos, scratch.data() + from * r.row_bytes + r.column_offset, r.out_row_bytes);
        pos += r.out_row_bytes;
      }
      continue;
    }
    const auto n =
        static_cast<std::size_t>(std::min<std::uint64_t>(r.out_row_bytes - within, out.size() - pos));
    io::pread_exact(fd, path,
                    r.source_offset + r.source_row(permuted) * r.row_bytes + r.column_offset + within,
                    out.subspan(pos, n));
    pos += n;
  }
}

}  // namespace shardwise::convert
