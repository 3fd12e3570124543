#pragma once
// UTF-8 checks shared by the header and index readers.

#include <cstddef>
#include <string_view>

namespace shardwise::st::detail {

// Length of the UTF-8 sequence starting at `text[i]`, or 0 when it is not valid (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view text, std::size_t i);

// The offset of the first sequence of `text` that is a NUL byte or not valid UTF-8, or npos when
// there is none. Runs of ASCII are skipped eight bytes at a time: headers are mostly ASCII.
std::size_t first_bad_byte(std::string_view text);

// first_bad_byte with the text's second half scanned on another thread when the text has
// `split_from` bytes or more (a Pro-sized checkpoint's header is 24 MB): the same answer.
std::size_t first_bad_byte(std::string_view text, std::size_t split_from);

}  // namespace shardwise::st::detail
