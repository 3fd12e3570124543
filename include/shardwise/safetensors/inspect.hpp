#pragma once
// What `shardwise inspect` prints: every tensor of a checkpoint with its dtype, shape, bytes and
// file, then totals. Built from headers alone.

#include <string>

#include <shardwise/safetensors/checkpoint.hpp>

namespace shardwise::st {

enum class InspectFormat { text, json };

// Tensors in Checkpoint::tensors() order. Text: an aligned table, then one totals line. JSON: one
// object {"tensors": [{name, dtype, shape, file, bytes}], "totals": {files, tensors, bytes}}.
// Control bytes in names are escaped in the text form (\xNN) so output cannot drive a terminal.
std::string inspect_report(const Checkpoint& checkpoint, InspectFormat format);

}  // namespace shardwise::st
