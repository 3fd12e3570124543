#pragma once
// One tensor as its header gives it, for what the rules read from a checkpoint without planning
// it: `rules scaffold` (scaffold.hpp) and `accepts:` (accepts.hpp).

#include <cstdint>
#include <span>
#include <string_view>

#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::rules {

struct TensorHeader {
  std::string_view name;
  st::DType dtype = st::DType::BOOL;
  std::span<const std::uint64_t> shape = {};
};

}  // namespace shardwise::rules
