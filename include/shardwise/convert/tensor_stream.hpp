#pragma once
// The bytes of one planned tensor exactly as they are written: its source slice, cast, produced
// piece by piece with pread into caller-owned buffers, so any tensor needs bounded memory. The
// converter writes these bytes; `verify` hashes them to get the expected checksum.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <shardwise/core/io.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

// Smallest scratch buffer TensorStream::read accepts.
inline constexpr std::size_t kMinScratchBytes = 4096;

// The input file holding a tensor's companion (its block scale), for block-scaled transforms. A
// packed dequantization reads several companions, possibly from several files: `files` is every
// input file, by index into Plan::input_files.
struct CompanionInput {
  int fd = -1;
  const std::string* path = nullptr;
  std::span<const io::ReadOnlyFile> files;
};

class TensorStream {
 public:
  // Checks that the slice and cast fit the source (dim in range, end <= size, byte-aligned rows,
  // cast from the right dtype, output bytes as planned); throws Error(input) naming both tensors.
  // A tensor with a companion (dequantize, requantize_fp4_weight) needs the other constructor.
  TensorStream(const plan::Source& source, const plan::PlannedTensor& tensor);
  // Any planned tensor of `plan`, its companion included (the same checks, and the companion's
  // slice against the block grid), and its row permutation (which the constructor above ignores).
  TensorStream(const plan::Plan& plan, const plan::PlannedTensor& tensor);

  // The input file (index into Plan::input_files) of the companion read() needs; none without one.
  std::optional<std::size_t> companion_file() const noexcept;
  // Whether read() needs CompanionInput::files (a packed dequantization).
  bool needs_input_files() const noexcept;

  std::uint64_t bytes() const noexcept { return out_segment_ * segments_; }
  // When the output is one range of the input file as it is (no cast or transform, a whole
  // tensor or a slice of one range, rows not permuted): where it starts, so that output byte i
  // is input byte start + i and neighbouring ranges can be read with one pread. None otherwise.
  std::optional<std::uint64_t> plain_source_offset() const noexcept;

  // Fills `out` with the output bytes [offset, offset + out.size()), reading the source from `fd`
  // (its input file, named `path` in errors). With a cast, offset and size must be multiples of
  // 2. `scratch` (at least kMinScratchBytes) holds source bytes between reading and converting or
  // gathering; how much is read at once never exceeds its size.
  // A block-scaled transform computes whole bands of block-rows (into a temporary when the range
  // cuts one) and reads its companion from `companion` (see companion_file()).
  void read(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out,
            std::span<std::byte> scratch, CompanionInput companion = {}) const;

  // Cut points splitting the output into pieces of at most `max_piece` bytes (at least 1), in
  // order, from 0 to bytes(): whole segments (rows of a strided slice) are kept together when
  // they fit, and every cut is a multiple of 8 bytes within a segment. An empty tensor is one
  // empty piece: {0, 0}.
  std::vector<std::uint64_t> piece_bounds(std::uint64_t max_piece) const;

 private:
  void read_direct(int fd, const std::string& path, std::uint64_t segment, std::uint64_t in_segment,
                   std::span<std::byte> out, std::span<std::byte> scratch) const;
  std::uint64_t read_gathered(int fd, const std::string& path, std::uint64_t segment,
                              std::span<std::byte> out, std::span<std::byte> scratch) const;
  void transform(const std::byte* src, std::byte* dst, std::uint64_t src_bytes) const;
  struct Block;  // a block-scaled transform (tensor_block.cpp)
  std::vector<std::uint64_t> block_bounds(std::uint64_t max_piece) const;
  void read_block(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                  std::span<std::byte> scratch, CompanionInput companion) const;
  void compute_band(int fd, const std::string& path, std::uint64_t band, std::span<std::byte> out,
                    std::span<std::byte> scratch, CompanionInput companion) const;
  void compute_packed_band(int fd, const std::string& path, std::uint64_t row, std::span<std::byte> out,
                           std::span<std::byte> scratch, CompanionInput companion) const;
  struct Rows;  // a row permutation (tensor_rows.cpp)
  void permute_rows(const plan::Plan& plan, const plan::PlannedTensor& tensor);
  void read_rows(int fd, const std::string& path, std::uint64_t offset, std::span<std::byte> out,
                 std::span<std::byte> scratch) const;

  plan::Cast cast_ = plan::Cast::none;
  std::uint64_t ratio_ = 1;             // source bytes per output byte (2 for f32 -> bf16)
  std::uint64_t first_ = 0;             // absolute offset of the first segment in the input file
  std::uint64_t stride_ = 0;            // source bytes between the starts of two segments
  std::uint64_t source_segment_ = 0;    // source bytes per segment
  std::uint64_t out_segment_ = 0;       // output bytes per segment
  std::uint64_t segments_ = 1;          // number of segments (1 for contiguous slices)
  std::shared_ptr<const Block> block_;  // set for block-scaled transforms
  std::shared_ptr<const Rows> rows_;    // set for permuted rows
};

// XXH3-64 of the bytes `stream` produces, read from `fd` through `buffer` and `scratch`.
std::uint64_t expected_xxh3(const TensorStream& stream, int fd, const std::string& path,
                            std::span<std::byte> buffer, std::span<std::byte> scratch,
                            CompanionInput companion = {});

}  // namespace shardwise::convert
