// diff's plan reader: the fast scanner (plan_scan.cpp) against the full SAX reader. On every text,
// a plan as written, reformatted, or mutated byte by byte, both give the very same records (or the
// same error), and the fast one accepts what `plan --format json` writes.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/plan_fixture.hpp"
// Internal to diff.
#include "plan/plan_reader.hpp"
#include "plan/text_store.hpp"

using namespace shardwise;
using namespace shardwise::test;
using plan::detail::NameTable;
using plan::detail::PlanReader;
using st::DType;

namespace {

std::string small_plan(const TempDir& dir) {
  write_checkpoint_file(dir / "a.safetensors", std::vector<TensorSpec>{
                                                   {"blk.0.col.weight", DType::BF16, {8, 4}},
                                                   {"blk.0.row.weight", DType::F16, {6, 8}},
                                                   {"blk.0.rep.weight", DType::BF16, {4}},
                                                   {"blk.0.items.1.col.weight", DType::BF16, {8, 4}},
                                                   {"blk.0.x.extra", DType::BF16, {2}},
                                               });
  // The checkpoint holds one of the rules' items: the ownership rule is marked partial.
  std::string rules_text = kPlanRules;
  const std::string count = "    count: n_items\n";
  rules_text.replace(rules_text.find(count), count.size(), count + "    partial: true\n");
  const rules::Rules rules = rules::Rules::load_text(rules_text, "plan-test.yaml");
  return plan::format_plan_json(plan::plan_checkpoint(st::Checkpoint::open(dir.str()), rules, {2, {}}));
}

// What a reader made of a text: its records with names spelled out, or its error.
struct Reading {
  std::string error;
  std::uint64_t model_parallel = 0;
  std::string head;
  std::vector<std::string> placements;
  std::vector<std::string> skipped;
  bool operator==(const Reading&) const = default;
};

// The records as text, each with its name.
template <typename Records>
void take(const Records& records, const NameTable& names, Reading& out) {
  out.model_parallel = records.model_parallel;
  out.head = records.head.dump();
  for (const auto& p : records.placements)
    out.placements.push_back(std::string(names.name(p.source)) + " @" + std::to_string(p.rank) + " " +
                             std::string(p.fields));
  for (const auto& s : records.skipped)
    out.skipped.push_back(std::string(names.name(s.source)) + " " + std::string(s.fields));
}

Reading read(const std::string& text, PlanReader reader) {
  Reading out;
  NameTable names;
  names.intern("a name known before");  // as when the second plan is read
  try {
    const auto records = plan::detail::read_plan_records(text, "p.json", names, reader);
    take(records, names, out);
  } catch (const Error& e) {
    out.error = std::to_string(static_cast<int>(e.kind())) + " " + e.what();
  }
  return out;
}

// The same, of the text written to a file and read through a window of `window` bytes, `ahead` of
// them kept ahead of each tensor (the error's file name as in read()).
Reading read_through_window(const TempDir& dir, const std::string& text, std::size_t window,
                            std::size_t ahead) {
  const std::string path = (dir.path() / "p.json").string();
  // Removed, not truncated: a file truncated and written again is flushed on close (ext4).
  std::filesystem::remove(path);
  write_file(path, text);
  Reading out;
  NameTable names;
  names.intern("a name known before");
  try {
    const auto records = plan::detail::read_plan_file(path, names, window, ahead);
    take(records, names, out);
  } catch (const Error& e) {
    std::string what = e.what();
    for (std::size_t at; (at = what.find(path)) != std::string::npos;)
      what.replace(at, path.size(), "p.json");
    out.error = std::to_string(static_cast<int>(e.kind())) + " " + what;
  }
  return out;
}

// Whether the fast reader takes the file `text` is written to, through such a window.
bool window_accepts(const TempDir& dir, const std::string& text, std::size_t window, std::size_t ahead) {
  const std::string path = (dir.path() / "w.json").string();
  std::filesystem::remove(path);
  write_file(path, text);
  NameTable names;
  plan::detail::PlanRecords records;
  plan::detail::HugeVector<std::size_t> output_of_placement;
  plan::detail::FileWindow in(path, window, ahead);
  return plan::detail::read_plain_plan(in, {records, names, output_of_placement});
}

bool fast_accepts(const std::string& text) {
  NameTable names;
  plan::detail::PlanRecords records;
  plan::detail::HugeVector<std::size_t> output_of_placement;
  return plan::detail::read_plain_plan(text, {records, names, output_of_placement});
}

}  // namespace

TEST_CASE(
    "plan reader: the fast reader reads a plan as written, reformatted or reordered as the full one does") {
  TempDir dir;
  const std::string plain = small_plan(dir);
  REQUIRE(plain.size() > 2048);  // so that a window of 2048 bytes slides
  const std::vector<std::string> texts = {
      plain,
      nlohmann::json::parse(plain).dump(),   // compact, keys sorted
      nlohmann::json::parse(plain).dump(2),  // indented
      nlohmann::ordered_json::parse(plain).dump(1, '\t'),
  };
  for (const std::string& text : texts) {
    INFO(text.substr(0, 300));
    CHECK(fast_accepts(text));
    const Reading fast = read(text, PlanReader::fast_when_plain);
    CHECK(fast.error.empty());
    CHECK(fast.placements.size() >= 5);
    CHECK(fast == read(text, PlanReader::full));
    // From a file, through windows smaller than the plan: taken by the fast reader when a tensor
    // fits in the part kept ahead, else by the full one; the same either way.
    if (text.size() > 2048) CHECK(window_accepts(dir, text, 2048, 1024));
    for (const auto& [window, ahead] : std::vector<std::pair<std::size_t, std::size_t>>{
             {64, 8}, {1000, 500}, {2048, 1024}, {1 << 20, 1 << 17}})
      CHECK(read_through_window(dir, text, window, ahead) == fast);
  }
  // The fast reader gives up on what it does not handle; the full one then reads it.
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"BF16\"", "\"B\\u0046\""}, {"\"version\": 1", "\"version\": 1.0"}, {"[8, 4]", "[8, 4e0]"}}) {
    std::string text = plain;
    text.replace(text.find(from), from.size(), to);
    CHECK_FALSE(fast_accepts(text));
    CHECK(read(text, PlanReader::fast_when_plain) == read(text, PlanReader::full));
  }
}

// A random position in `text` where `is` holds, or npos.
template <typename Is>
std::size_t some(const std::string& text, std::mt19937& random, const Is& is) {
  std::vector<std::size_t> at;
  for (std::size_t i = 0; i < text.size(); ++i)
    if (is(i)) at.push_back(i);
  return at.empty() ? std::string::npos : at[random() % at.size()];
}

// One edit of the kind that separates a plain plan from another JSON text or from no JSON at all:
// a byte changed, a number made odd, a string escaped, a key twice, deep nesting.
void mutate(std::string& text, std::mt19937& random) {
  static const std::string alphabet = "{}[]\",: \n0123456789-.eEtrufalsn\\/u\"x";
  static const std::vector<std::string> words = {"0",
                                                 "00",
                                                 "-0",
                                                 "-",
                                                 "1.5",
                                                 "e5",
                                                 "E-1",
                                                 "18446744073709551615",
                                                 "18446744073709551616",
                                                 "-9223372036854775808",
                                                 "-9223372036854775809",
                                                 "\\u0041",
                                                 "\\n",
                                                 "\\\"",
                                                 "\xc3\xa9",
                                                 "\x01",
                                                 "null",
                                                 "nul",
                                                 "true",
                                                 "fals",
                                                 "\"name\": \"x\", ",
                                                 "\"rank\": 0, ",
                                                 "\"source\": {}, ",
                                                 std::string(40, '[') + std::string(40, ']'),
                                                 "\t",
                                                 "\r"};
  const auto digit = [&](std::size_t i) { return text[i] >= '0' && text[i] <= '9'; };
  const auto after_brace = [&](std::size_t i) { return i > 0 && text[i - 1] == '{'; };
  const auto in_string = [&](std::size_t i) { return i > 0 && text[i - 1] == '"' && text[i] != ','; };
  const std::size_t any = random() % text.size();
  switch (random() % 8) {
    case 0:
      text.erase(any, 1 + random() % 3);
      break;
    case 1:
      text.insert(any, 1, alphabet[random() % alphabet.size()]);
      break;
    case 2:
      text[any] = alphabet[random() % alphabet.size()];
      break;
    case 3:  // a span repeated: keys twice, values twice
      text.insert(any, text.substr(any, 1 + random() % 40));
      break;
    case 4: {  // a number replaced
      const std::size_t at = some(text, random, [&](std::size_t i) { return digit(i) && !digit(i - 1); });
      if (at == std::string::npos) break;
      std::size_t end = at;
      while (end < text.size() && digit(end)) ++end;
      text.replace(at, end - at, words[random() % 11]);
      break;
    }
    default: {
      const int where = static_cast<int>(random() % 3);
      const std::size_t at = some(text, random,
                                  where == 0   ? std::function<bool(std::size_t)>(digit)
                                  : where == 1 ? std::function<bool(std::size_t)>(after_brace)
                                               : std::function<bool(std::size_t)>(in_string));
      if (at != std::string::npos) text.insert(at, words[random() % words.size()]);
    }
  }
}

TEST_CASE("plan reader: on mutated plans both readers give the same records or the same error") {
  TempDir dir;
  const std::string plain = small_plan(dir);
  std::mt19937 random(28);  // fixed: the same texts every run
  std::size_t accepted = 0, errors = 0;
  for (int round = 0; round < 1500; ++round) {
    std::string text = plain;
    for (int edits = 1 + static_cast<int>(random() % 2); edits > 0; --edits) mutate(text, random);
    const Reading fast = read(text, PlanReader::fast_when_plain);
    const Reading full = read(text, PlanReader::full);
    INFO(text);
    REQUIRE(fast == full);
    // Through a window that cuts the plan, often inside a tensor: never a cut token read as whole.
    const std::size_t window = 1024 + random() % 1024;
    REQUIRE(read_through_window(dir, text, window, window / 2) == full);
    accepted += fast_accepts(text) ? 1 : 0;
    errors += fast.error.empty() ? 0 : 1;
  }
  // Both kinds of text were tried: some the fast reader took, most were refused by both.
  CHECK(accepted > 50);
  CHECK(errors > 500);
}

TEST_CASE("plan files: a file or pipe beyond the limit is refused and one of exactly the limit is read") {
  TempDir dir;
  plan::detail::FileText text;
  const auto refused = [&text](const std::string& path, std::size_t limit) {
    try {
      text.read(path, limit);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK_THAT(e.what(),
                 Catch::Contains(path + ": not a shardwise plan: more than " + std::to_string(limit)));
      return true;
    }
    return false;
  };
  // An endless input is refused once the limit is read, not read until memory runs out.
  CHECK(refused("/dev/zero", 1 << 20));
  // A regular file: by its size, before it is read.
  const std::string file = (dir.path() / "plan.json").string();
  write_file(file, std::string(4097, 'x'));
  CHECK(refused(file, 4096));
  text.read(file, 4097);
  CHECK(text.view() == std::string(4097, 'x'));
  // A pipe (as `diff <(plan ...) <(plan ...)` gives): read to its end, up to the limit.
  for (const std::size_t bytes : {std::size_t{4096}, std::size_t{4097}}) {
    int ends[2];
    REQUIRE(::pipe(ends) == 0);
    const std::string sent(bytes, 'y');
    REQUIRE(::write(ends[1], sent.data(), sent.size()) == static_cast<ssize_t>(sent.size()));
    ::close(ends[1]);
    const std::string path = "/proc/self/fd/" + std::to_string(ends[0]);
    if (bytes == 4096) {
      text.read(path, 4096);
      CHECK(text.view() == sent);
    } else {
      CHECK(refused(path, 4096));
    }
    ::close(ends[0]);
  }
}
