// The UTF-8 scan of headers and indexes: the scan in two halves on two threads against one scan.
#include <catch2/catch.hpp>

#include <cstddef>
#include <string>
#include <vector>

#include <shardwise/safetensors/utf8.hpp>

using namespace shardwise::st::detail;

namespace {

constexpr std::size_t npos = std::string::npos;

// Texts around a seam: runs of ASCII and of multibyte sequences, so that the middle falls on an
// ASCII byte, inside a sequence or inside a run of sequences; then each bad byte put at every place.
std::vector<std::string> texts() {
  const std::string two = "\xC3\xA9", three = "\xE2\x82\xAC", four = "\xF0\x9F\x98\x80";
  std::vector<std::string> out = {"", "a", "ab", std::string(17, 'x'), two, three + "a", "a" + four};
  for (const std::string& run : {two, three, four, two + three + four}) {
    for (int before = 0; before < 10; ++before) {
      std::string text(static_cast<std::size_t>(before), 'x');
      for (int i = 0; i < 4; ++i) text += run;
      out.push_back(text + std::string(static_cast<std::size_t>(9 - before), 'y'));
      out.push_back(text);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("the UTF-8 scan in two halves finds the byte the scan of the whole text finds") {
  const std::vector<std::string> bad = {std::string(1, '\0'), "\xFF", "\xC0\xAF",        "\xED\xA0\x80",
                                        "\xE2\x82",           "\x80", "\xF4\x90\x80\x80"};
  std::size_t found = 0;
  for (const std::string& text : texts()) {
    INFO(text);
    CHECK(first_bad_byte(text, 0) == first_bad_byte(text));
    CHECK(first_bad_byte(text, 0) == npos);
    for (const std::string& b : bad) {
      for (std::size_t at = 0; at <= text.size(); ++at) {
        std::string with = text;
        with.insert(at, b);
        INFO("bad bytes at " << at);
        const std::size_t whole = first_bad_byte(with);
        CHECK(first_bad_byte(with, 0) == whole);
        CHECK(first_bad_byte(with, with.size()) == whole);
        CHECK(first_bad_byte(with, with.size() + 1) == whole);
        if (whole != npos) ++found;
      }
    }
  }
  CHECK(found > 1000);  // the bad bytes were found, in both halves
}
