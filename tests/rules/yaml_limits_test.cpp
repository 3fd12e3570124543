// Bounded work on any rules file: aliases cannot expand a small file past the limits, text that is
// not UTF-8 is refused where it is, and a FIFO (as the file or as a parent) is refused unread.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <string>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>

#include "rules/yaml_reader.hpp"
#include "support/support.hpp"

using shardwise::Error;
using shardwise::ErrorKind;
using shardwise::rules::Rules;
using shardwise::test::TempDir;
using shardwise::test::write_file;
namespace detail = shardwise::rules::detail;

namespace {

// A minimal valid file; `extra` is appended (sections of the test's own).
std::string rules_with(const std::string& extra) {
  return "shardwise: 1\nname: t\noutput: {file: \"m{rank}.safetensors\"}\ntable:\n  wq: {split: out}\n" +
         extra;
}

std::string load_error(const std::string& yaml, const std::string& name = "r.yaml") {
  try {
    Rules::load_text(yaml, name);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    return e.what();
  }
  FAIL("loading did not fail");
  return "";
}

// The billion laughs: ten aliases of ten aliases of ... nine levels deep, 10^9 nodes once expanded,
// from a file of a kilobyte.
std::string alias_bomb() {
  std::string yaml = rules_with("tests:\n");
  yaml += "  - {name: a0, expect: &a0 [x, x, x, x, x, x, x, x, x, x]}\n";
  for (int level = 1; level <= 9; ++level) {
    yaml += "  - {name: a" + std::to_string(level) + ", expect: &a" + std::to_string(level) + " [";
    for (int i = 0; i < 10; ++i) yaml += (i ? ", *a" : "*a") + std::to_string(level - 1);
    yaml += "]}\n";
  }
  return yaml;
}

TEST_CASE("yaml limits: aliases expanding past the node limit are refused at once") {
  const std::string error = load_error(alias_bomb());
  CHECK_THAT(error, Catch::StartsWith("invalid rules file r.yaml (1 problem):\n  r.yaml:"));
  CHECK_THAT(error,
             Catch::Contains(": the YAML expands to more than 200000 nodes once its aliases (*name) are "
                             "expanded: at most 200000 nodes and 4194304 bytes of text are accepted"));
}

TEST_CASE("yaml limits: one long pattern aliased many times is refused by its bytes") {
  // 50 KB of pattern, aliased 200 times: 10 MB of regular expressions from a 51 KB file.
  std::string yaml =
      rules_with("skip:\n  - {name: s0, match: &p '" + std::string(50'000, 'a') + "', reason: r}\n");
  for (int i = 1; i <= 200; ++i) yaml += "  - {name: s" + std::to_string(i) + ", match: *p, reason: r}\n";
  const std::string error = load_error(yaml);
  CHECK_THAT(error,
             Catch::Contains(": the YAML expands to more than 4194304 bytes once its aliases (*name) are "
                             "expanded"));
}

TEST_CASE("yaml limits: an alias of its own anchor (a cycle) is refused, not walked forever") {
  const std::string error = load_error(rules_with("tests: &loop [*loop]\n"));
  CHECK_THAT(error, Catch::Contains("the YAML expands to more than 200000 nodes"));
}

TEST_CASE("yaml limits: aliases within the limits load as before") {
  const std::string yaml = rules_with(
      "  wk: &split {split: out}\n  wv: *split\n"
      "skip:\n  - {name: a, match: 'rotary', reason: &r recomputed}\n"
      "  - {name: b, match: 'inv_freq', reason: *r}\n");
  CHECK_NOTHROW(Rules::load_text(yaml, "r.yaml"));
}

TEST_CASE("yaml limits: the walk counts nodes and bytes as expanded") {
  detail::YamlReader in("x.yaml");
  // 1 + 3 scalars of 4 bytes, the anchor's list expanded twice: 1 + 2 * (1 + 3) nodes.
  CHECK(detail::check_expanded_size(YAML::Load("a: &l [abcd, abcd, abcd]\nb: *l\n"), in));
  CHECK(in.problems().empty());
  std::string many = "[";
  for (std::size_t i = 0; i < detail::kMaxExpandedNodes; ++i) many += i ? ",x" : "x";
  many += "]";
  CHECK_FALSE(detail::check_expanded_size(YAML::Load(many), in));  // the list itself is a node too
  CHECK(in.problems().size() == 1);
}

TEST_CASE("yaml utf-8: a byte that is not UTF-8 is refused at its line and column") {
  struct Case {
    std::string yaml;
    std::string expected;
  };
  const Case cases[] = {
      {rules_with("skip:\n  - {name: caf\xe9, match: x, reason: r}\n"),
       "r.yaml:7:15: byte 0xe9 is not UTF-8: a rules file is UTF-8 text (save it as UTF-8)"},
      // Columns count characters: "é" (two bytes) is one.
      {rules_with("# d\xc3\xa9j\xc3\xa0 \xff\n"), "r.yaml:6:8: byte 0xff is not UTF-8"},
      {"\xe9shardwise: 1\n", "r.yaml:1:1: byte 0xe9 is not UTF-8"},
      {rules_with("# \xed\xa0\x80 a surrogate\n"), "r.yaml:6:3: byte 0xed is not UTF-8"},
      {rules_with(std::string("# a NUL\0 byte\n", 14)), "r.yaml:6:8: a NUL byte: a rules file is UTF-8 text"},
  };
  for (const Case& c : cases) {
    INFO(c.yaml);
    CHECK_THAT(load_error(c.yaml), Catch::Contains(c.expected));
  }
}

TEST_CASE("yaml utf-8: a parent that is not UTF-8 is refused in its own name") {
  TempDir dir;
  write_file(dir / "parent.yaml", rules_with("# \xe9\n"));
  write_file(dir / "child.yaml", "shardwise: 1\nextends: parent.yaml\n");
  try {
    Rules::load_file((dir / "child.yaml").string());
    FAIL("a parent with a Latin-1 byte was accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    CHECK_THAT(e.what(), Catch::Contains((dir / "parent.yaml").string() + ":6:3: byte 0xe9 is not UTF-8"));
  }
}

TEST_CASE("rules files: a FIFO is refused unread, as the file and as a parent") {
  TempDir dir;
  const auto fifo = dir / "fifo.yaml";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // no writer: reading it would wait forever
  try {
    Rules::load_file(fifo.string());
    FAIL("a FIFO was read as a rules file");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    CHECK(std::string(e.what()) ==
          fifo.string() + ": a FIFO (named pipe), not a regular file: refused without reading it");
  }
  write_file(dir / "child.yaml", "shardwise: 1\nextends: fifo.yaml\n");
  try {
    Rules::load_file((dir / "child.yaml").string());
    FAIL("a FIFO was read as a parent");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    CHECK_THAT(e.what(), Catch::Contains((dir / "child.yaml").string() +
                                         ":2:10: cannot extend 'fifo.yaml': " + fifo.string() +
                                         ": a FIFO (named pipe), not a regular file"));
  }
}

}  // namespace
