#pragma once
// The bytes of one new tensor, gathered in order from the old rank files. Internal to reshard.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include <shardwise/reshard/reshard.hpp>

#include "core/io.hpp"

namespace shardwise::reshard {

// Receives the tensor's bytes in order: `reserve(n)` (n at most the staging size) returns where
// the next n bytes go; the caller fills them before the next call.
using Reserve = std::function<std::span<std::byte>(std::size_t)>;

// Reads `tensor` of `plan` from `inputs` (the old files, same order as plan.old_files) through
// `scratch`, handing the bytes to `reserve` in chunks of at most `chunk` bytes. Throws Error(io)
// naming the old file on a read error.
void gather(const ReshardPlan& plan, const NewTensor& tensor, const std::vector<io::ReadOnlyFile>& inputs,
            std::size_t chunk, std::span<std::byte> scratch, const Reserve& reserve);

}  // namespace shardwise::reshard
