// parse_decimal: the whole text or nothing, and no number that does not fit in 64 bits.

#include <shardwise/core/decimal.hpp>

#include <optional>
#include <string_view>

#include <catch2/catch.hpp>

using namespace shardwise;

namespace {

TEST_CASE("parse_decimal takes whole unsigned decimal texts up to 2^64-1") {
  struct Case {
    std::string_view text;
    std::optional<std::uint64_t> value;
  };
  const Case cases[] = {
      {"0", 0},
      {"7", 7},
      {"007", 7},
      {"4096", 4096},
      {"18446744073709551615", UINT64_MAX},
      {"18446744073709551616", std::nullopt},  // 2^64
      {"99999999999999999999", std::nullopt},
      {"123456789012345678901234567890123456789012345678901234567890", std::nullopt},
      {"", std::nullopt},
      {"-1", std::nullopt},
      {"+1", std::nullopt},
      {" 1", std::nullopt},
      {"1 ", std::nullopt},
      {"12a", std::nullopt},
      {"0x10", std::nullopt},
      {"1.5", std::nullopt},
  };
  for (const Case& c : cases) {
    INFO("text '" << c.text << "'");
    CHECK(parse_decimal(c.text) == c.value);
  }
}

}  // namespace
