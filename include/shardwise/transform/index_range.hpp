#pragma once
// A half-open range [begin, end) of indices along one dimension: the rows, columns or groups of a
// stored tensor that a band or tile of a transform reads.

#include <cstdint>

namespace shardwise::transform {

struct IndexRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  std::uint64_t size() const noexcept { return end - begin; }
};

}  // namespace shardwise::transform
