#include <shardwise/core/decimal.hpp>

#include <charconv>
#include <system_error>

namespace shardwise {

std::optional<std::uint64_t> parse_decimal(std::string_view text) noexcept {
  if (text.empty()) return std::nullopt;
  std::uint64_t value = 0;
  const char* const end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);  // sets errc::result_out_of_range
  if (error != std::errc() || stop != end) return std::nullopt;
  return value;
}

}  // namespace shardwise
