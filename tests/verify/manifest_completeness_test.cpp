// A manifest that lists part of the output vouches for nothing: `verify --manifest-only` and
// `reshard` make the one check (output::file_list_problems) and agree on what they refuse.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <shardwise/output/manifest.hpp>

#include "support/support.hpp"
#include "verify/verify_fixture.hpp"

namespace shardwise::test {
namespace {

using Json = nlohmann::ordered_json;

output::Manifest four_ranks() {
  output::Manifest m;
  m.complete = true;
  m.rules.output_file = "model{rank}-mp{mp}.safetensors";
  m.params["mp"] = 4;
  for (std::uint64_t rank = 0; rank < 4; ++rank) {
    m.outputs.push_back({rank, "model" + std::to_string(rank) + "-mp4.safetensors", 0, 0, {}});
  }
  m.side_files.push_back({"tokenizer.json", 0});
  return m;
}

TEST_CASE("file_list_problems: every rank 0..mp-1 once, in order, no file twice, a sane mp") {
  struct Case {
    const char* what;
    std::function<void(output::Manifest&)> edit;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"complete", [](output::Manifest&) {}, {}},
      {"two of four ranks",
       [](output::Manifest& m) { m.outputs.resize(2); },
       {"lists 2 rank files for mp=4"}},
      {"no output",
       [](output::Manifest& m) { m.outputs.clear(); },
       {"lists no output file", "lists 0 rank files for mp=4"}},
      {"a duplicate entry",
       [](output::Manifest& m) { m.outputs[1] = m.outputs[0]; },
       {"lists model0-mp4.safetensors more than once",
        "entry 1 is rank 0 (model0-mp4.safetensors), expected rank 1"}},
      {"mp=0", [](output::Manifest& m) { m.params["mp"] = 0; }, {"records mp=0, not between 1 and 4096"}},
      {"no mp",
       [](output::Manifest& m) { m.params.erase("mp"); },
       {"records no model parallelism (parameter mp)"}},
      {"rank 2^64-1",
       [](output::Manifest& m) { m.outputs[3].rank = UINT64_MAX; },
       {"entry 3 is rank 18446744073709551615 (model3-mp4.safetensors), expected rank 3"}},
      {"a rank file under another name",
       [](output::Manifest& m) { m.outputs[2].file = "model2-mp8.safetensors"; },
       {"entry 2 is rank 2 file model2-mp8.safetensors, expected rank 2 file model2-mp4.safetensors"}},
      {"a side file twice",
       [](output::Manifest& m) { m.side_files.push_back(m.side_files.front()); },
       {"lists tokenizer.json more than once"}},
      {"a side file named as a rank file",
       [](output::Manifest& m) { m.side_files.front().file = "model3-mp4.safetensors"; },
       {"lists model3-mp4.safetensors more than once"}},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    output::Manifest m = four_ranks();
    c.edit(m);
    CHECK(output::file_list_problems(m) == c.expected);
  }
}

TEST_CASE("file_list_problems: mirrored output (no pattern, mp=1) lists each file once, in order") {
  output::Manifest m;
  m.complete = true;
  m.params["mp"] = 1;
  m.outputs = {{0, "model-00001-of-00002.safetensors", 0, 0, {}},
               {1, "model-00002-of-00002.safetensors", 0, 0, {}}};
  CHECK(output::file_list_problems(m).empty());
  m.outputs[1].file = m.outputs[0].file;
  CHECK(output::file_list_problems(m) ==
        std::vector<std::string>{"lists model-00001-of-00002.safetensors more than once"});
  m.outputs.clear();
  CHECK(output::file_list_problems(m) == std::vector<std::string>{"lists no output file"});
}

// A copy of the converted output whose manifest `edit` changed (and whose files it may delete).
std::string tampered(const TempDir& tmp, const std::function<void(Json&, const std::string&)>& edit) {
  const std::string out = copy_of_output(tmp);
  const std::string path = out + "/shardwise-manifest.json";
  Json manifest = Json::parse(read_file(path));
  edit(manifest, out);
  write_file(path, manifest.dump());
  return out;
}

TEST_CASE("verify --manifest-only and reshard refuse a manifest that lists part of the output") {
  struct Case {
    const char* what;
    std::function<void(Json&, const std::string&)> edit;
    std::string finding;
  };
  const std::vector<Case> cases = {
      {"two of four rank files, the others deleted",
       [](Json& m, const std::string& out) {
         m["outputs"].erase(2);
         m["outputs"].erase(2);
         fs::remove(out + "/model2-mp4.safetensors");
         fs::remove(out + "/model3-mp4.safetensors");
       },
       "lists 2 rank files for mp=4"},
      {"no output listed", [](Json& m, const std::string&) { m["outputs"] = Json::array(); },
       "lists no output file"},
      {"a duplicate entry", [](Json& m, const std::string&) { m["outputs"][1] = m["outputs"][0]; },
       "lists model0-mp4.safetensors more than once"},
      {"mp=0", [](Json& m, const std::string&) { m["params"]["mp"] = 0; },
       "records mp=0, not between 1 and 4096"},
      {"rank 2^64-1", [](Json& m, const std::string&) { m["outputs"][3]["rank"] = UINT64_MAX; },
       "entry 3 is rank 18446744073709551615 (model3-mp4.safetensors), expected rank 3"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    TempDir tmp;
    const std::string out = tampered(tmp, c.edit);
    const CommandResult verified =
        run_command({shardwise_binary(), "verify", "--manifest-only", "--save-path", out, "--quiet"});
    CHECK(verified.exit_code == 6);
    CHECK_THAT(verified.out, Catch::Contains("shardwise-manifest.json: " + c.finding + "\n"));
    const CommandResult resharded =
        run_command({shardwise_binary(), "reshard", "--from", out, "-m", "2", "--dry-run"});
    CHECK(resharded.exit_code == 4);
    CHECK_THAT(resharded.err, Catch::Contains(out + "/shardwise-manifest.json: " + c.finding));
  }
}

}  // namespace
}  // namespace shardwise::test
