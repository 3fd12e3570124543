// `output: {mirror: true}` in the rules language: loaded, summarised, and its mistakes word for word.
#include <catch2/catch.hpp>

#include <string>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>

using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::rules::Rules;

namespace {

std::string load_error(const std::string& yaml) {
  try {
    Rules::load_text(yaml, "x.yaml");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    return e.what();
  }
  FAIL("loading did not fail");
  return "";
}

}  // namespace

TEST_CASE("output: {mirror: true} mirrors the input, output: {file} does not") {
  const Rules mirrored = Rules::load_text("shardwise: 1\nname: m\noutput: {mirror: true}\n", "m.yaml");
  CHECK(mirrored.mirrors_input());
  CHECK(mirrored.output_file(0, 1).empty());
  CHECK_THAT(mirrored.summary(),
             Catch::Contains("output: mirrored (each input file's name, the index rewritten)"));
  const Rules ranked = Rules::load_text("shardwise: 1\nname: r\noutput: {file: \"m{rank}.st\"}\n", "r.yaml");
  CHECK(!ranked.mirrors_input());
  CHECK(ranked.output_file(3, 4) == "m3.st");
}

TEST_CASE("mirror mistakes, word for word") {
  CHECK(load_error("shardwise: 1\nname: m\noutput: {mirror: false}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:3:18: 'mirror' of output must be true (or leave it "
        "out "
        "and give 'file'), got 'false'");
  CHECK(load_error("shardwise: 1\nname: m\noutput: {mirror: true, file: \"m{rank}.st\"}\n") ==
        "invalid rules file x.yaml (1 problem):\n  x.yaml:3:9: output takes either 'file' (one file per "
        "rank) or "
        "'mirror: true' (the input's files), not both");
  CHECK(load_error("shardwise: 1\nname: m\noutput: {mirrored: true}\n") ==
        "invalid rules file x.yaml (2 problems):\n"
        "  x.yaml:3:9: output needs 'file' (one file per rank, e.g. file: "
        "\"model{rank}-mp{mp}.safetensors\") or "
        "'mirror: true' (one output per input file, under its name)\n"
        "  x.yaml:3:10: unknown key 'mirrored' in output (did you mean 'mirror'?)");
}
