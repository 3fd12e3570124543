#pragma once
// A tensor shape as the plan holds it: the compact shape a header's tensors have
// (safetensors/small_shape.hpp), up to 3 dims in place, at 450,000 shapes in a plan of
// DeepSeek-V4-Pro's size. Reads like st::Shape (size, [], begin/end, ==) and converts to one.

#include <shardwise/safetensors/small_shape.hpp>

namespace shardwise::plan {

using Shape = st::SmallShape;

}  // namespace shardwise::plan
