#pragma once
// The bytes of a fused output (plan::Composite, rules `fuse:`) exactly as they are written: its
// parts' bytes, each produced by the part's own TensorStream (its slice and cast), so no part is
// ever held whole. Concatenated along dim 0, a block of parts is a sequence of contiguous runs, one
// per part; along a later dim, the parts' rows interleave (run = one part's row) and each run is a
// ranged read of that part. Stacked blocks follow one another. The converter writes these bytes;
// `verify` hashes them to get the expected checksum.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <shardwise/convert/tensor_stream.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

// An open input file, for the parts' reads: one per Plan::input_files.
struct InputFile {
  int fd = -1;
  const std::string* path = nullptr;
};

class CompositeStream {
 public:
  // Checks every part against its source (as TensorStream does) and the parts against the fused
  // tensor (block shapes, row sizes, total bytes); throws Error(input) naming the output and part.
  CompositeStream(const plan::Plan& plan, const plan::PlannedTensor& tensor);

  std::uint64_t bytes() const noexcept { return bytes_; }

  // Fills `out` with output bytes [offset, offset + out.size()), reading each part from its input
  // file in `inputs` (indexed as Plan::input_files) through `scratch` (TensorStream::read's).
  void read(std::span<const InputFile> inputs, std::uint64_t offset, std::span<std::byte> out,
            std::span<std::byte> scratch) const;

  // Cut points (as TensorStream::piece_bounds): along dim 0 each part's own pieces, so a piece never
  // spans two parts; along a later dim whole rows of the block when they fit in `max_piece`.
  std::vector<std::uint64_t> piece_bounds(std::uint64_t max_piece) const;

  // The source (index into Plan::sources) output byte `offset` comes from.
  std::size_t source_at(std::uint64_t offset) const;

 private:
  struct Part {
    TensorStream stream;
    std::size_t file = 0;         // index into Plan::input_files
    std::size_t source = 0;       // index into Plan::sources
    std::uint64_t row_bytes = 0;  // bytes of one of its rows (all of it along dim 0)
  };
  struct Run {
    std::size_t part = 0;      // index into parts_
    std::uint64_t offset = 0;  // in the part's bytes
    std::uint64_t length = 0;  // bytes left in the run
  };
  Run run_at(std::uint64_t offset) const;

  std::vector<Part> parts_;
  std::uint64_t per_block_ = 1;
  std::uint64_t rows_ = 1;             // rows per block (the dims before the fused one)
  std::uint64_t block_row_bytes_ = 0;  // one row of a block: every part's row
  std::uint64_t block_bytes_ = 0;
  std::vector<std::uint64_t> row_offsets_;  // per part of a block: where its row starts in a block row
  std::uint64_t bytes_ = 0;
};

// XXH3-64 of the bytes `stream` produces (as convert::expected_xxh3 for one tensor).
std::uint64_t expected_xxh3(const CompositeStream& stream, std::span<const InputFile> inputs,
                            std::span<std::byte> buffer, std::span<std::byte> scratch);

}  // namespace shardwise::convert
