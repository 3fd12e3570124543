#pragma once
// Text from a checkpoint (tensor and file names), or any other untrusted text, as a terminal may
// be given it: every control byte (below 0x20, and 0x7f) as `\xNN`, so that a name cannot move the
// cursor, change colours or retitle the window. Other bytes (UTF-8 included) are kept as they are.
// The one escaping of every text view: inspect, the plan and its summary, diff, explain, verify's
// findings and the messages printed on stderr.

#include <string>
#include <string_view>

namespace shardwise {

// True when `text` has no control byte: printable(text) == text.
bool is_printable(std::string_view text) noexcept;

// `text` with every control byte as `\xNN`.
std::string printable(std::string_view text);

// As printable, appended to `out` (no allocation when `text` has no control byte).
void append_printable(std::string& out, std::string_view text);

// As printable, except that line breaks are kept: for messages of several lines.
std::string printable_lines(std::string_view text);

}  // namespace shardwise
