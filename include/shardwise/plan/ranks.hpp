#pragma once
// Which rank takes what, the arithmetic behind plan::Placement (plan.hpp): the rank an owned
// tensor goes to, and the part of a split dim each rank takes. Header-only and free of
// dependencies, so that the rules (`explain`, a rules file's `tests:`) state the very formula the
// planner and reshard place by.

#include <cstdint>

namespace shardwise::plan {

// An owned tensor's rank: its scope's `count` items go to the mp ranks in equal runs, index /
// (count / mp). The caller has checked that count is a non-zero multiple of mp.
constexpr std::uint64_t owner_rank(std::uint64_t index, std::uint64_t count, std::uint64_t mp) noexcept {
  return index / (count / mp);
}

// The range [begin, end) of a dim of `size` entries that `rank` takes when the dim is split into mp
// equal parts. The caller has checked that mp divides size.
struct SplitRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};
constexpr SplitRange split_range(std::uint64_t size, std::uint64_t rank, std::uint64_t mp) noexcept {
  const std::uint64_t per_rank = size / mp;
  return {rank * per_rank, (rank + 1) * per_rank};
}

}  // namespace shardwise::plan
