#pragma once
// JSON strings byte for byte as the two writers whose files shardwise reproduces spell them:
// - safetensors' header, written by Rust's serde_json: UTF-8 as is;
// - an index written by Python's json module with its default ensure_ascii=True (DeepSeek's
//   fp8_cast_bf16.py): every code point outside ' '..'~' as \uXXXX in lower case, those above
//   U+FFFF as a UTF-16 surrogate pair.
// Both put `"` and `\` after a backslash, write \b \f \n \r \t short and the other controls below
// U+0020 as \u00XX in lower case, and leave `/` alone. They differ only outside printable ASCII
// (DEL, U+007F, included: raw in serde_json, \u007f in Python). Pure functions, no I/O.

#include <string>
#include <string_view>

namespace shardwise::st {

// Appends `utf8` in double quotes as serde_json writes it (safetensors headers).
// Throws Error(input) naming `what` when `utf8` is not valid UTF-8.
void append_serde_json_string(std::string& out, std::string_view utf8, std::string_view what);

// Appends `utf8` in double quotes as Python's json.dumps writes it with ensure_ascii=True.
// Throws Error(input) naming `what` when `utf8` is not valid UTF-8.
void append_python_json_string(std::string& out, std::string_view utf8, std::string_view what);

}  // namespace shardwise::st
