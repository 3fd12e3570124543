#include "reshard/gather.hpp"

#include <algorithm>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

namespace shardwise::reshard {

namespace {

// A part of a row is read as part of a region of many rows (one pread, the parts picked out) when
// it is short (a pread per row would cost more than the bytes) or most of the row (little is read
// in vain); otherwise with one pread per row.
constexpr std::uint64_t kShortPartBytes = 4 << 10;

bool read_as_region(std::uint64_t part, std::uint64_t row) {
  return part < kShortPartBytes || 2 * part >= row;
}

// Hands bytes just read to `on_piece` when they belong to a whole piece (`piece` set).
void feed(const PieceBytes& on_piece, std::optional<std::size_t> piece, std::span<const std::byte> bytes) {
  if (on_piece && piece) on_piece(*piece, bytes);
}

// Copies bytes [offset, offset + bytes) of one input to the receiver, a chunk at a time.
void copy_range(const io::ReadOnlyFile& input, std::uint64_t offset, std::uint64_t bytes, std::size_t chunk,
                const Reserve& reserve, std::optional<std::size_t> piece, const PieceBytes& on_piece) {
  for (std::uint64_t done = 0; done < bytes;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, bytes - done));
    const std::span<std::byte> out = reserve(n);
    io::pread_exact(input.fd(), input.path(), offset + done, out);
    feed(on_piece, piece, out);
    done += n;
  }
}

// Where one old piece's part of every row lies: the row's bytes in the piece and the part's
// start and length within them.
struct Segment {
  std::size_t file = 0;
  std::uint64_t piece_offset = 0;
  std::uint64_t piece_row = 0;       // bytes of one row of the piece
  std::uint64_t skip = 0;            // bytes of the row before the part
  std::uint64_t bytes = 0;           // the part
  std::optional<std::size_t> whole;  // the piece's index when the part is all of its row
};

std::uint64_t bits_to_bytes(const LogicalTensor& t, std::uint64_t bits) {
  if (bits % 8 != 0) {
    throw Error(ErrorKind::input, fmt::format("{}: a cut of {} {} elements does not fall on a byte", t.name,
                                              bits / st::dtype_bits(t.dtype), st::dtype_name(t.dtype)));
  }
  return bits / 8;
}

}  // namespace

std::vector<PieceRead> pieces_read(const ReshardPlan& plan, const NewTensor& tensor) {
  const LogicalTensor& t = plan.logical[tensor.logical];
  if (t.placement.kind != plan::Placement::Kind::split) return {{0, true}};
  std::vector<PieceRead> reads;
  for (std::size_t i = 0; i < t.pieces.size(); ++i) {
    const Piece& p = t.pieces[i];
    if (std::max(p.begin, tensor.begin) >= std::min(p.end, tensor.end)) continue;
    reads.push_back({i, tensor.begin <= p.begin && p.end <= tensor.end});
  }
  return reads;
}

void gather(const ReshardPlan& plan, const NewTensor& tensor, const std::vector<io::ReadOnlyFile>& inputs,
            std::size_t chunk, std::span<std::byte> scratch, const Reserve& reserve,
            const PieceBytes& on_piece) {
  const LogicalTensor& t = plan.logical[tensor.logical];
  if (t.placement.kind != plan::Placement::Kind::split) {
    copy_range(inputs[t.pieces.front().file], t.pieces.front().offset, tensor.bytes, chunk, reserve, 0,
               on_piece);
    return;
  }
  // The logical tensor as [outer, size, inner]: a row is the [size, inner] block of one outer index.
  const auto d = static_cast<std::size_t>(t.placement.dim);
  std::uint64_t outer = 1;
  std::uint64_t inner = 1;
  for (std::size_t i = 0; i < t.shape.size(); ++i) {
    if (i < d) outer *= t.shape[i];
    if (i > d) inner *= t.shape[i];
  }
  const std::uint64_t unit_bits = inner * st::dtype_bits(t.dtype);
  std::vector<Segment> segments;
  for (const PieceRead& read : pieces_read(plan, tensor)) {
    const Piece& p = t.pieces[read.piece];
    const std::uint64_t begin = std::max(p.begin, tensor.begin);
    const std::uint64_t end = std::min(p.end, tensor.end);
    segments.push_back({p.file, p.offset, bits_to_bytes(t, (p.end - p.begin) * unit_bits),
                        bits_to_bytes(t, (begin - p.begin) * unit_bits),
                        bits_to_bytes(t, (end - begin) * unit_bits),
                        read.whole ? std::optional(read.piece) : std::nullopt});
  }
  std::uint64_t row = 0;  // bytes of one new row
  for (const Segment& s : segments) row += s.bytes;
  if (row == 0 || outer == 0) return;
  if (segments.size() == 1 && segments.front().bytes == segments.front().piece_row) {
    // Whole rows of one piece: contiguous.
    copy_range(inputs[segments.front().file], segments.front().piece_offset, row * outer, chunk, reserve,
               segments.front().whole, on_piece);
    return;
  }
  if (row > chunk) {
    // Rows larger than a chunk: each part streamed on its own.
    for (std::uint64_t o = 0; o < outer; ++o) {
      for (const Segment& s : segments) {
        copy_range(inputs[s.file], s.piece_offset + o * s.piece_row + s.skip, s.bytes, chunk, reserve,
                   s.whole, on_piece);
      }
    }
    return;
  }
  const std::uint64_t batch = std::max<std::uint64_t>(1, chunk / row);
  for (std::uint64_t o0 = 0; o0 < outer; o0 += batch) {
    const std::uint64_t rows = std::min(batch, outer - o0);
    const std::span<std::byte> out = reserve(static_cast<std::size_t>(rows * row));
    std::uint64_t column = 0;  // where this segment starts within a new row
    for (const Segment& s : segments) {
      const io::ReadOnlyFile& input = inputs[s.file];
      const std::uint64_t per_read = read_as_region(s.bytes, s.piece_row) ? scratch.size() / s.piece_row : 0;
      if (per_read == 0) {
        for (std::uint64_t r = 0; r < rows; ++r) {
          const auto part =
              out.subspan(static_cast<std::size_t>(r * row + column), static_cast<std::size_t>(s.bytes));
          io::pread_exact(input.fd(), input.path(), s.piece_offset + (o0 + r) * s.piece_row + s.skip, part);
          feed(on_piece, s.whole, part);
        }
      } else {
        // Many short parts: their rows read as one region, the parts picked out of it.
        for (std::uint64_t r0 = 0; r0 < rows; r0 += per_read) {
          const std::uint64_t n = std::min(per_read, rows - r0);
          const auto region = scratch.first(static_cast<std::size_t>(n * s.piece_row));
          io::pread_exact(input.fd(), input.path(), s.piece_offset + (o0 + r0) * s.piece_row, region);
          feed(on_piece, s.whole, region);  // whole rows of the piece, in order
          for (std::uint64_t r = 0; r < n; ++r) {
            std::memcpy(out.data() + (r0 + r) * row + column, region.data() + r * s.piece_row + s.skip,
                        static_cast<std::size_t>(s.bytes));
          }
        }
      }
      column += s.bytes;
    }
  }
}

}  // namespace shardwise::reshard
