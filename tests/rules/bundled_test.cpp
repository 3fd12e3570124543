// The registry of bundled rules: every rules/*.yaml is embedded under its name, loads clean, and is
// found by name; how a --rules value is told to be a name or a path.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/bundled.hpp>

#include "support/support.hpp"

using shardwise::Error;
using shardwise::ErrorKind;
namespace rules = shardwise::rules;

TEST_CASE("bundled: every rules/*.yaml is embedded under its file stem, and nothing else") {
  std::set<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(shardwise::test::source_dir() + "/rules")) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml")
      on_disk.insert(entry.path().filename());
  }
  std::set<std::string> embedded;
  for (const auto& bundled : rules::bundled_rules()) {
    embedded.insert(bundled.file_name);
    CHECK(bundled.file_name == bundled.name + ".yaml");
    CHECK(bundled.text ==
          shardwise::test::read_file(shardwise::test::source_dir() + "/rules/" + bundled.file_name));
  }
  CHECK(embedded == on_disk);
  const auto& all = rules::bundled_rules();
  CHECK(std::is_sorted(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; }));
}

TEST_CASE("bundled: every bundled file loads clean and its name: is its file stem") {
  for (const auto& bundled : rules::bundled_rules()) {
    INFO(bundled.file_name);
    const rules::Rules loaded = rules::load_named_rules(bundled.name);
    CHECK(loaded.name() == bundled.name);
    CHECK(loaded.display_name() == "<bundled>/" + bundled.file_name);
    CHECK_FALSE(loaded.description().empty());
  }
}

TEST_CASE("bundled: the default is bundled, and Rules::bundled() loads it") {
  REQUIRE(rules::find_bundled_rules(rules::default_rules_name()) != nullptr);
  CHECK(rules::Rules::bundled().name() == rules::default_rules_name());
  CHECK(rules::find_bundled_rules("no-such-rules") == nullptr);
}

TEST_CASE("bundled: a value with a '/' or a .yaml/.yml ending is a path, anything else a name") {
  const std::pair<const char*, bool> cases[] = {
      {"deepseek-v4-w4a16", false},
      {"deepseek-v3.2", false},
      {"my", false},
      {"my.yaml", true},
      {"my.yml", true},
      {"./my", true},
      {"rules/deepseek-v4-w4a16", true},
      {"/abs/rules.txt", true},
      {"yaml", false},
  };
  for (const auto& [value, is_path] : cases) {
    INFO(value);
    CHECK(rules::is_rules_path(value) == is_path);
  }
}

TEST_CASE("bundled: an unknown name is a usage error with the near miss and the names there are") {
  try {
    (void)rules::load_named_rules("deepseek-v4-w4a61");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    const std::string message = e.what();
    CHECK(message.starts_with(
        "no bundled rules named 'deepseek-v4-w4a61' (did you mean 'deepseek-v4-w4a16'?); bundled: "));
    CHECK(message.ends_with(
        "(`shardwise rules list`). A rules file is given by a path with a '/' or a .yaml ending "
        "(e.g. ./deepseek-v4-w4a61)"));
  }
}

TEST_CASE("bundled: a path is read from the file system, not looked up") {
  shardwise::test::TempDir dir;
  const auto path = dir / "deepseek-v4-w4a16.yaml";
  shardwise::test::write_file(path, "shardwise: 1\nname: local\noutput: {file: \"r{rank}.safetensors\"}\n");
  CHECK(rules::load_named_rules(path.string()).name() == "local");
  CHECK_THROWS_AS(rules::load_named_rules((dir / "absent.yaml").string()), Error);
}
