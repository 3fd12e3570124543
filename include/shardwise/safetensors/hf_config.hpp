#pragma once
// config.json of a checkpoint whose quantisation a conversion removed, as transformers leaves it
// after HfQuantizer.dequantize and save_pretrained: quantization_config (and the older
// compression_config) deleted, the dtype set, every other key kept, written as
// json.dumps(config, indent=2, sort_keys=True) + "\n". Pure functions, no I/O.

#include <string>
#include <string_view>

#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::st {

// The rewritten text of `config_text`: "bfloat16" or "float16" (for `dtype` BF16 or F16) set in
// whichever of "torch_dtype" and "dtype" the input has (both if both; "torch_dtype", which old and
// new transformers read, when it has neither). Throws Error(input) naming `path` when the text is
// not a JSON object (NaN and Infinity literals, which Python's json accepts, are refused too).
// Numbers are written as Python writes them: integers as they are (up to 64 bits), floats as
// repr() (1e-06, 10000.0, 1e+16).
std::string dequantized_config_json(std::string_view config_text, DType dtype, const std::string& path);

// Python's repr() of a float, as json.dumps writes it: the shortest digits that read back as the
// same double, positional from 1e-4 up to below 1e16 (with ".0" when integral), otherwise
// d.ddde+XX; NaN, Infinity, -Infinity.
std::string python_float_repr(double value);

}  // namespace shardwise::st
