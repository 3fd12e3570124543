#pragma once
// The bytes of one new tensor, gathered in order from the old rank files. Internal to reshard.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include <shardwise/reshard/reshard.hpp>

#include <shardwise/core/io.hpp>

namespace shardwise::reshard {

// Receives the tensor's bytes in order: `reserve(n)` (n at most the staging size) returns where
// the next n bytes go; the caller fills them before the next call.
using Reserve = std::function<std::span<std::byte>(std::size_t)>;

// Receives the bytes of each piece the gather reads whole (PieceRead::whole), in order, as they are
// read: the piece's index in its logical tensor's pieces and its next bytes.
using PieceBytes = std::function<void(std::size_t piece, std::span<const std::byte> bytes)>;

// A piece of a logical tensor that gathering a new tensor reads: `whole` when it reads all of its
// bytes, in order (a replicated or owned tensor's copy; a split piece within the new tensor's
// range, as merging mp N into M < N reads every piece), otherwise a part of it.
struct PieceRead {
  std::size_t piece = 0;  // index into LogicalTensor::pieces
  bool whole = false;
};

// The pieces gathering `tensor` reads, in order.
std::vector<PieceRead> pieces_read(const ReshardPlan& plan, const NewTensor& tensor);

// Reads `tensor` of `plan` from `inputs` (the old files, same order as plan.old_files) through
// `scratch`, handing the bytes to `reserve` in chunks of at most `chunk` bytes, and the bytes of
// each whole piece to `on_piece` (when given). Throws Error(io) naming the old file on a read error.
void gather(const ReshardPlan& plan, const NewTensor& tensor, const std::vector<io::ReadOnlyFile>& inputs,
            std::size_t chunk, std::span<std::byte> scratch, const Reserve& reserve,
            const PieceBytes& on_piece = {});

}  // namespace shardwise::reshard
