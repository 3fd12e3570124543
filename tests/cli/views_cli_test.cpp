// What the text views say, through the real binary: names from a checkpoint escaped in every view
// (no terminal control byte reaches the screen), consumed tensors in explain and the summary as
// convert treats them, and messages and help lines that say what the tool does.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/support.hpp"
#include "verify/verify_fixture.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

// Whether `text` holds a byte a terminal would act on (other than a line break).
bool has_control(const std::string& text) {
  return std::any_of(text.begin(), text.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\n') || c == 0x7f;
  });
}

CommandResult sw(std::vector<std::string> args) {
  args.insert(args.begin(), shardwise_binary());
  return run_command(args);
}

// Every tensor kept whole on every rank; one skipped, with its name in the skip table.
constexpr const char* kKeepAll = R"(shardwise: 1
name: keep-all
output: {file: "model{rank}-mp{mp}.safetensors"}
unknown_keys: replicate
skip:
  - {name: drop, match: '^skipme', reason: not wanted}
keys:
  - {name: any, match: '', key: tensor}
)";

const std::string kRed = "a\x1b[31m.weight";          // colours the rest of the screen red
const std::string kTitle = "skipme\x1b]0;owned\x07";  // retitles the terminal window
const std::string kBell = "b\x07.bias";

struct HostileCheckpoint {
  TempDir dir;
  std::string in = (dir / "in").string();
  std::string rules = (dir / "keep.yaml").string();
  std::string fewer = (dir / "fewer.yaml").string();  // skips kRed too
};

const HostileCheckpoint& hostile() {
  static const auto made = [] {
    auto c = std::make_unique<HostileCheckpoint>();
    fs::create_directories(c->in);
    write_file(c->in + "/model.safetensors",
               build_safetensors({{kRed, "BF16", {2, 2}, std::string(8, '\1')},
                                  {kBell, "BF16", {2}, std::string(4, '\2')},
                                  {kTitle, "BF16", {2}, std::string(4, '\3')}}));
    write_file(c->rules, kKeepAll);
    std::string fewer = kKeepAll;
    fewer.replace(fewer.find("'^skipme'"), 9, "'^(skipme|a)'");
    write_file(c->fewer, fewer);
    return c;
  }();
  return *made;
}

TEST_CASE("views: control characters in names are escaped in every text view") {
  const HostileCheckpoint& h = hostile();
  const std::vector<std::string> planning = {"-i", h.in, "--rules", h.rules, "-m", "2"};
  const auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), planning.begin(), planning.end());
    return sw(args);
  };

  const auto text = with({"plan"});
  REQUIRE(text.exit_code == 0);
  CHECK(!has_control(text.out));
  CHECK_THAT(text.out, Catch::Contains("a\\x1b[31m.weight") && Catch::Contains("skipme\\x1b]0;owned\\x07") &&
                           Catch::Contains("b\\x07.bias"));
  const auto summary = with({"plan", "--summary"});
  REQUIRE(summary.exit_code == 0);
  CHECK(!has_control(summary.out));

  // diff of two plans: the names of the tensors only one of them places.
  const std::string one = (h.dir / "all.json").string();
  const std::string two = (h.dir / "fewer.json").string();
  const auto json1 = with({"plan", "--format", "json"});
  const auto json2 = sw({"plan", "--format", "json", "-i", h.in, "--rules", h.fewer, "-m", "2"});
  REQUIRE(json1.exit_code == 0);
  REQUIRE(json2.exit_code == 0);
  write_file(one, json1.out);
  write_file(two, json2.out);
  const auto diff = sw({"diff", one, two});
  CHECK(diff.exit_code == 1);
  CHECK(!has_control(diff.out));
  CHECK_THAT(diff.out, Catch::Contains("a\\x1b[31m.weight"));

  // explain, of a name given on the command line.
  const auto explained = sw({"explain", "--rules", h.rules, "-m", "2", kRed, kTitle});
  CHECK(explained.exit_code == 0);
  CHECK(!has_control(explained.out));
  CHECK_THAT(explained.out,
             Catch::Contains("a\\x1b[31m.weight") && Catch::Contains("skipme\\x1b]0;owned\\x07"));

  // An error naming the tensors: rules that refuse them.
  std::string refusing = kKeepAll;
  refusing += "reject:\n  - {name: refuse, match: '\\.(weight|bias)$', reason: refused}\n";
  write_file(h.dir / "refusing.yaml", refusing);
  const auto refused = sw({"plan", "-i", h.in, "--rules", (h.dir / "refusing.yaml").string(), "-m", "2"});
  CHECK(refused.exit_code == 4);
  CHECK(!has_control(refused.err));
  CHECK_THAT(refused.err, Catch::Contains("a\\x1b[31m.weight"));
}

TEST_CASE("views: verify's findings and reshard's dry run escape the names they print") {
  const HostileCheckpoint& h = hostile();
  TempDir tmp;
  const std::string out = (tmp / "out").string();
  REQUIRE(sw({"convert", "-i", h.in, "--rules", h.rules, "-m", "2", "-o", out, "-q"}).exit_code == 0);

  const auto dry = sw({"reshard", "--from", out, "-m", "1", "--dry-run"});
  CHECK(dry.exit_code == 0);
  CHECK(!has_control(dry.out));
  CHECK_THAT(dry.out, Catch::Contains("a\\x1b[31m.weight"));

  // The manifest's checksum of one tensor changed: verify names that tensor.
  const std::string manifest_path = out + "/shardwise-manifest.json";
  nlohmann::ordered_json manifest = nlohmann::ordered_json::parse(read_file(manifest_path));
  bool changed = false;
  for (auto& tensor : manifest["outputs"][0]["tensors"]) {
    if (tensor["name"] == kRed) {
      tensor["xxh3"] = "0000000000000000";
      changed = true;
    }
  }
  REQUIRE(changed);
  write_file(manifest_path, manifest.dump());
  const auto verified = sw({"verify", "--manifest-only", "-o", out, "-q"});
  CHECK(verified.exit_code == 6);
  CHECK(!has_control(verified.out));
  CHECK(!has_control(verified.err));
  CHECK_THAT(verified.out,
             Catch::Contains("model0-mp2.safetensors: a\\x1b[31m.weight: bytes differ from the manifest"));
}

// A small official V4 checkpoint: 4 experts per MoE layer, 2 files.
std::string official_v4(const TempDir& dir) {
  const std::string in = (dir / "v4").string();
  REQUIRE(
      run_tool("gen_official_checkpoint", {"--out", in, "--format", "v4", "--experts", "4", "--files", "2"})
          .exit_code == 0);
  return in;
}

TEST_CASE("views: explain says a dequantised weight's block scale is consumed, not placed") {
  const std::vector<std::string> common = {"explain", "--rules", "deepseek-v4", "--n-experts", "256",
                                           "-m",      "4"};
  std::vector<std::string> scale = common;
  scale.push_back("layers.2.attn.wo_a.scale");
  const auto consumed = sw(scale);
  REQUIRE(consumed.exit_code == 0);
  CHECK_THAT(consumed.out,
             Catch::Contains("  consumed by: transform[wo_a-to-bf16] (<bundled>/deepseek-v4.yaml:96:5)") &&
                 Catch::Contains("the block scale of layers.2.attn.wo_a.weight (dequantize") &&
                 Catch::Contains("not written"));
  CHECK(consumed.out.find("  output:") == std::string::npos);
  CHECK(consumed.out.find("  placement") == std::string::npos);

  // The weight itself, and a scale no transform consumes, are placed as before.
  std::vector<std::string> others = common;
  others.insert(others.end(), {"layers.2.attn.wo_a.weight", "layers.2.attn.wq_b.scale"});
  const auto placed = sw(others);
  REQUIRE(placed.exit_code == 0);
  CHECK(placed.out.find("consumed by") == std::string::npos);
  CHECK_THAT(placed.out, Catch::Contains("  output: layers.2.attn.wo_a.weight\n") &&
                             Catch::Contains("  output: layers.2.attn.wq_b.scale\n"));
}

// The tensor count `inspect` gives the checkpoint.
std::string inspected_tensors(const std::string& in) {
  const auto inspected = sw({"inspect", in});
  REQUIRE(inspected.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(inspected.out, m, std::regex(R"(\ntotal: \d+ files?, (\d+) tensors?,)")));
  return m[1].str();
}

// The TENSORS column of the summary's rules table, summed, and the count its heading states.
std::pair<std::uint64_t, std::uint64_t> rules_table_counts(const std::string& summary) {
  const std::regex heading(R"(\nrules: \d+ decided the ([\d,]+) input tensors\n)");
  std::smatch m;
  REQUIRE(std::regex_search(summary, m, heading));
  const auto number = [](std::string text) {
    text.erase(std::remove(text.begin(), text.end(), ','), text.end());
    return std::stoull(text);
  };
  const std::uint64_t stated = number(m[1].str());
  std::istringstream rows(summary.substr(static_cast<std::size_t>(m.position(0) + m.length(0))));
  std::string line;
  std::getline(rows, line);  // RULE  TENSORS  ...: the column is right-aligned under its heading
  const std::size_t end = line.find("TENSORS") + std::string("TENSORS").size();
  std::uint64_t sum = 0;
  while (std::getline(rows, line) && !line.empty()) {
    const std::string cell = line.substr(0, end);
    sum += number(cell.substr(cell.find_last_of(' ') + 1));
  }
  return {sum, stated};
}

TEST_CASE("views: plan --summary counts the consumed block scales, so its rows add up to the input") {
  TempDir dir;
  const std::string in = official_v4(dir);
  const auto summary =
      sw({"plan", "--summary", "--rules", "deepseek-v4", "-i", in, "-m", "4", "--n-experts", "4"});
  REQUIRE(summary.exit_code == 0);
  const auto [sum, stated] = rules_table_counts(summary.out);
  CHECK(sum == stated);
  CHECK_THAT(summary.out, Catch::Contains("consumed ("));
  std::smatch m;
  REQUIRE(std::regex_search(summary.out, m, std::regex(R"(\ninput: 2 files, ([\d,]+) tensors)")));
  CHECK(m[1].str() == std::to_string(stated));
  CHECK(m[1].str() == inspected_tensors(in));
}

TEST_CASE("views: every view counts each input tensor once, a scale read by input name included") {
  TempDir dir;
  const std::string in = (dir / "v3").string();
  REQUIRE(run_tool("gen_official_checkpoint", {"--out", in, "--format", "v3", "--files", "2", "--index"})
              .exit_code == 0);
  const std::string inspected = inspected_tensors(in);
  const auto summary = sw({"plan", "--summary", "--rules", "fp8-cast-bf16", "-i", in});
  REQUIRE(summary.exit_code == 0);
  const auto [sum, stated] = rules_table_counts(summary.out);
  CHECK(sum == stated);
  CHECK(std::to_string(stated) == inspected);
  // The full text plan's `input:` line and the JSON plan's two counts say the same.
  const auto text = sw({"plan", "--rules", "fp8-cast-bf16", "-i", in});
  REQUIRE(text.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(text.out, m, std::regex(R"(\ninput: 2 files, ([\d,]+) tensors)")));
  CHECK(m[1].str() == inspected);
  const auto json = sw({"plan", "--format", "json", "--rules", "fp8-cast-bf16", "-i", in});
  REQUIRE(json.exit_code == 0);
  REQUIRE(std::regex_search(json.out, m, std::regex(R"("input": \{.*"tensors": (\d+), "bytes")")));
  CHECK(m[1].str() == inspected);
  REQUIRE(std::regex_search(json.out, m, std::regex(R"("input_tensors": (\d+))")));
  CHECK(m[1].str() == inspected);
}

TEST_CASE("messages: reshard's rules parameters without --rules, for a folder with no manifest") {
  TempDir dir;
  fs::create_directories(dir / "ref");
  const auto result =
      sw({"reshard", "--from", (dir / "ref").string(), "-m", "2", "--dry-run", "--n-experts", "8"});
  CHECK(result.exit_code == 2);
  CHECK(result.err.find("the manifest records them") == std::string::npos);
  CHECK_THAT(result.err,
             Catch::Contains((dir / "ref").string() +
                             " has no shardwise-manifest.json, so name the rules that wrote it with "
                             "--rules, and their parameters"));
}

TEST_CASE("messages: rules check refuses a dtype dequantize cannot read, at its FILE:LINE:COL") {
  TempDir dir;
  const std::string file = (dir / "dq.yaml").string();
  write_file(file, R"(shardwise: 1
name: dq
output: {file: "model{rank}-mp{mp}.safetensors"}
unknown_keys: replicate
keys:
  - {name: any, match: '', key: tensor}
transforms:
  - name: to-bf16
    match: '\.weight$'
    dequantize: {scale: '{stem}.scale', block: [128, 128], nan: triton, dtype: [F8_E4M3, I32]}
)");
  const auto result = sw({"rules", "check", file});
  CHECK(result.exit_code == 3);
  CHECK_THAT(result.err,
             Catch::Contains(file + ":10:90: dequantize reads one-byte weights (F8_E4M3), not I32"));
  CHECK(result.out.find("I32 x block scale") == std::string::npos);
}

TEST_CASE("messages: a transform on packed members is one message, not one per incomplete group") {
  TempDir dir;
  const std::string in = (dir / "in").string();
  REQUIRE(run_tool("gen_checkpoint", {"--out", in, "--config", "tiny", "--seed", "3"}).exit_code == 0);
  const std::string file = (dir / "member.yaml").string();
  write_file(file, R"(shardwise: 1
name: member-transform
extends: deepseek-v4-w4a16
transforms:
  - name: qweight-as-f32
    match: '\.qweight$'
    reinterpret: {from: I32, to: F32}
)");
  const auto result = sw({"plan", "-i", in, "--rules", file, "-m", "2", "--n-experts", "8"});
  CHECK(result.exit_code == 4);
  CHECK(result.err.find("missing qweight") == std::string::npos);
  CHECK(result.err.find("incomplete packed group") == std::string::npos);
  CHECK_THAT(result.err, Catch::Contains("transform[qweight-as-f32] (" + file + ":5:5) applies to ") &&
                             Catch::Contains(" members of packed layout gptq-w4a16 (the first: ") &&
                             Catch::Contains("transforms apply to plain tensors only"));
  // One line for the rule, whatever the number of groups.
  std::size_t lines = 0;
  for (std::size_t at = result.err.find("transform[qweight-as-f32]"); at != std::string::npos;
       at = result.err.find("transform[qweight-as-f32]", at + 1)) {
    ++lines;
  }
  CHECK(lines == 1);
}

TEST_CASE("help: each line says what the tool does") {
  // The parameters' example names a parameter of the rules in effect, and works.
  const auto v4 = sw({"convert", "--rules", "deepseek-v4", "--help"});
  CHECK(v4.exit_code == 0);
  CHECK(v4.out.find("--group-size 64") == std::string::npos);
  CHECK_THAT(v4.out, Catch::Contains(
                         "`--n-experts N` sets the parameter n_experts; --param n_experts=N is the same"));
  const auto mirror = sw({"convert", "--rules", "fp8-cast-bf16", "--help"});
  CHECK(mirror.exit_code == 0);
  CHECK_THAT(mirror.out, Catch::Contains("fp8-cast-bf16 have none"));
  // Without --rules, every bundled file's parameters are flags, each naming the files that declare it.
  const auto bundled = sw({"convert", "--help"});
  CHECK_THAT(bundled.out, Catch::Contains("(a parameter of deepseek-v3, deepseek-v3.2, deepseek-v4, "
                                          "deepseek-v4-w4a16; required)") &&
                              Catch::Contains("refuse any value but 1"));
  CHECK(bundled.out.find("which refuse it") == std::string::npos);
  // reshard's view options are the dry run's, and --rule selects a cut.
  const auto reshard = sw({"reshard", "--help"});
  CHECK(reshard.exit_code == 0);
  CHECK_THAT(reshard.out, Catch::Contains("with --dry-run: only the tensors cut this way") &&
                              Catch::Contains("a reshard selects by cut") &&
                              Catch::Contains("with --dry-run: the plan at a glance"));
  CHECK(reshard.out.find("table[wq]") == std::string::npos);
}

TEST_CASE("manifest: a choice parameter is recorded by its word, and an older manifest's index still reads") {
  TempDir dir;
  const std::string in = official_v4(dir);
  const std::string out = (dir / "out").string();
  const std::vector<std::string> common = {"--rules", "deepseek-v4",    "-i", in, "-m", "2", "--n-experts",
                                           "4",       "--expert-dtype", "fp8"};
  const auto run = [&](std::vector<std::string> args) {
    args.insert(args.end(), common.begin(), common.end());
    return sw(args);
  };
  REQUIRE(run({"convert", "-o", out, "-q"}).exit_code == 0);
  const std::string path = out + "/shardwise-manifest.json";
  nlohmann::ordered_json manifest = nlohmann::ordered_json::parse(read_file(path));
  CHECK(manifest["params"]["expert_dtype"] == "fp8");
  CHECK(manifest["shardwise_manifest"] == 6);
  CHECK(run({"verify", "-o", out, "-q"}).exit_code == 0);

  // As version 3 wrote it: the index (fp4|fp8: 1).
  manifest["shardwise_manifest"] = 3;
  manifest["params"]["expert_dtype"] = 1;
  write_file(path, manifest.dump());
  const auto verified = run({"verify", "-o", out, "-q"});
  CHECK(verified.exit_code == 0);
  CHECK(verified.out.empty());
  CHECK(sw({"verify", "--manifest-only", "-o", out, "-q"}).exit_code == 0);
  const auto resumed = run({"convert", "-o", out, "--resume"});
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Catch::Contains("kept 2 files an earlier run finished"));
  // fp4 now: a change of the parameter, in words.
  manifest["params"]["expert_dtype"] = 0;
  write_file(path, manifest.dump());
  const auto stale = run({"verify", "-o", out, "-q"});
  CHECK(stale.exit_code == 6);
  CHECK_THAT(stale.out, Catch::Contains("parameter expert_dtype is fp8 now, but fp4 in the manifest"));
}

// Runs `command` under /bin/sh with SIGINT ignored, as `cmd &` in a script starts it, and, once
// `started` exists (the command runs: the forked test process no longer handles signals), sends it
// SIGINT every few ms until it ends; returns the wait status.
int run_with_sigint_ignored(const std::string& command, const std::string& started) {
  const int pid = spawn_command({"/bin/sh", "-c", "trap '' INT; exec " + command});
  int status = 0;
  for (int i = 0; i < 60000; ++i) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    if (fs::exists(started)) ::kill(pid, SIGINT);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return status;
}

TEST_CASE("signals: a conversion started with SIGINT ignored keeps ignoring it") {
  TempDir dir;
  const std::string in = (dir / "in").string();
  REQUIRE(run_tool("gen_checkpoint", {"--out", in, "--config", "tiny", "--seed", "5"}).exit_code == 0);
  const std::string out = (dir / "out").string();
  const int status = run_with_sigint_ignored("'" + shardwise_binary() + "' convert -i '" + in + "' -o '" +
                                                 out + "' --n-experts 8 -m 4 -q --threads 1",
                                             out);
  CHECK_FALSE(WIFSIGNALED(status));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(sw({"verify", "--manifest-only", "-o", out, "-q"}).exit_code == 0);
}

}  // namespace
}  // namespace shardwise::test
