// parse_param_value: a parameter's value as the command line gives it, a number or one of its
// choices (the choice's index), and the exact usage errors otherwise.

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>

using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::rules::ParamInfo;
using shardwise::rules::parse_param_value;

namespace {

std::string usage_error(const ParamInfo& param, std::string_view text) {
  try {
    parse_param_value(param, text);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    return e.what();
  }
  FAIL("accepted '" << text << "'");
  return {};
}

}  // namespace

TEST_CASE("a numeric parameter takes a non-negative integer, nothing else") {
  ParamInfo group;
  group.name = "group_size";
  CHECK(parse_param_value(group, "64") == 64);
  CHECK(parse_param_value(group, "0") == 0);
  CHECK(parse_param_value(group, "18446744073709551615") == 18446744073709551615ULL);
  for (const char* bad : {"", "-1", "6 4", "64x", "0x40", "18446744073709551616", "fp8"}) {
    INFO(bad);
    CHECK(usage_error(group, bad) ==
          fmt::format("--group-size '{}': expected a non-negative integer (parameter group_size)", bad));
  }
}

TEST_CASE("a choice parameter takes one of its choices, as its index") {
  ParamInfo dtype;
  dtype.name = "expert_dtype";
  dtype.choices = {"fp4", "fp8"};
  CHECK(parse_param_value(dtype, "fp4") == 0);
  CHECK(parse_param_value(dtype, "fp8") == 1);
  CHECK(usage_error(dtype, "fp6") == "--expert-dtype fp6: expected one of fp4, fp8 (did you mean 'fp4'?)");
  CHECK(usage_error(dtype, "1") == "--expert-dtype 1: expected one of fp4, fp8");
}
