#include <shardwise/verify/output_names.hpp>

#include <optional>
#include <string>

#include <catch2/catch.hpp>

namespace shardwise::verify {
namespace {

rules::Rules rules_with_output(const std::string& file) {
  return rules::Rules::load_text(
      "shardwise: 1\nname: t\noutput: {file: \"" + file +
          "\"}\nkeys:\n  - {match: '(?P<key>[^.]+)$'}\ntable:\n  a: {split: replicate}\n",
      "test.yaml");
}

struct Case {
  std::string name;
  std::optional<std::uint64_t> rank;
};

TEST_CASE("output names of the bundled rules at mp=4") {
  const OutputNamePattern pattern = OutputNamePattern::from_rules(rules::Rules::bundled(), 4);
  const Case cases[] = {
      {"model0-mp4.safetensors", 0},
      {"model3-mp4.safetensors", 3},
      {"model12-mp4.safetensors", 12},
      {"model1-mp8.safetensors", std::nullopt},   // another mp
      {"model01-mp4.safetensors", std::nullopt},  // not how a rank is written
      {"model-mp4.safetensors", std::nullopt},
      {"modelx-mp4.safetensors", std::nullopt},
      {"model1-mp4.safetensors.partial", std::nullopt},
      {".model1-mp4.safetensors.partial", std::nullopt},
      {"model99999999999999999999-mp4.safetensors", std::nullopt},  // beyond 64 bits
      {"tokenizer.json", std::nullopt},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    CHECK(pattern.rank_of(c.name) == c.rank);
  }
}

TEST_CASE("a template with the rank twice, followed by digits") {
  const OutputNamePattern pattern =
      OutputNamePattern::from_rules(rules_with_output("r{rank}-of{mp}-{rank}7.st"), 2);
  const Case cases[] = {
      {"r0-of2-07.st", 0},
      {"r13-of2-137.st", 13},
      {"r1-of2-27.st", std::nullopt},  // the two ranks differ
      {"r1-of2-1.st", std::nullopt},
      {"r1-of3-17.st", std::nullopt},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    CHECK(pattern.rank_of(c.name) == c.rank);
  }
}

}  // namespace
}  // namespace shardwise::verify
