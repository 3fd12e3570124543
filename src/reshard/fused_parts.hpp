#pragma once
// A fused output's parts (rules `fuse:`), found in its rank file for `convert --reverse`: each part
// of a fused output concatenated along dim 0 is a contiguous range of its bytes (stacked: block
// after block, each block its parts in order), so it can be gathered as a tensor of its own.
// Internal to reshard.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/reshard/reshard.hpp>

namespace shardwise::reshard {

// One part of a fused output on one rank: its name and cut as the manifest records them, the piece
// of the rank file it is, and the XXH3 of its bytes (what replicated copies are compared by).
struct FusedPart {
  std::string name;
  const output::TensorCut* cut = nullptr;
  std::uint64_t xxh3 = 0;
  Piece piece;  // no recorded checksum: the whole tensor's is compared here
};

// The parts of the fused output `tensor` (a composite cut), whose bytes are [offset, offset +
// bytes) of `file` (index into ReshardPlan::old_files, open as `fd` at `path`), read once through
// `buffer`: the whole compared with its recorded checksum, each part hashed. Every problem (parts
// concatenated along a later dim, whose rows interleave; part sizes that do not add up to the
// tensor; a damaged tensor) goes to `problems`, and then no part is returned.
std::vector<FusedPart> fused_parts(const output::ManifestTensor& tensor, std::size_t file, int fd,
                                   const std::string& path, std::uint64_t offset, std::uint64_t bytes,
                                   std::span<std::byte> buffer, Diagnostics& problems);

}  // namespace shardwise::reshard
