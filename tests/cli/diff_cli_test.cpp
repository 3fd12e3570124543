// `shardwise diff` end to end: plans made before and after a one-line edit of the bundled rules
// (exit 1, exactly the tensors the edit moves), a plan diffed with itself (exit 0), --format json,
// and files that are not plans (exit 4) or cannot be read (exit 5).

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/support.hpp"

using shardwise::test::generate_checkpoint;
using shardwise::test::read_file;
using shardwise::test::run_command;
using shardwise::test::shardwise_binary;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

struct Plans {
  TempDir dir;
  std::string before, after;  // JSON plan files
};

// The same checkpoint planned with the bundled rules and with them edited on one line.
void make_plans(Plans& p, const std::string& from, const std::string& to) {
  generate_checkpoint(p.dir / "in", {"--layers", "2", "--experts", "2", "--files", "2", "--mtp-embed-head"});
  std::string rules = run_command({shardwise_binary(), "rules", "show"}).out;
  const auto at = rules.find(from);
  REQUIRE(at != std::string::npos);
  write_file(p.dir / "edited.yaml", rules.replace(at, from.size(), to));
  p.before = (p.dir / "before.json").string();
  p.after = (p.dir / "after.json").string();
  const std::vector<std::string> common = {
      shardwise_binary(), "plan", "-i", (p.dir / "in").string(), "-m", "2", "--n-experts", "2",
      "--format",         "json"};
  auto plan_to = [&](const std::string& file, std::vector<std::string> extra) {
    std::vector<std::string> argv = common;
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto result = run_command(argv);
    REQUIRE(result.exit_code == 0);
    write_file(file, result.out);
  };
  plan_to(p.before, {});
  plan_to(p.after, {"--rules", (p.dir / "edited.yaml").string()});
}

shardwise::test::CommandResult diff(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {shardwise_binary(), "diff"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

}  // namespace

TEST_CASE("diff lists exactly the tensors a one-line rules edit moves, and exits 1") {
  Plans p;
  make_plans(p, "  wo_b:         {split: in}", "  wo_b:         {split: replicate}");
  const auto result = diff({p.before, p.after});
  CHECK(result.exit_code == 1);
  CHECK(result.err.empty());
  std::vector<std::string> rows;
  for (std::size_t at = result.out.find("\n  "); at != std::string::npos;
       at = result.out.find("\n  ", at + 1)) {
    rows.push_back(result.out.substr(at + 3, result.out.find(' ', at + 3) - at - 3));
  }
  // Layers 0 and 1 and the MTP block: each wo_b's packed triple.
  CHECK(rows == std::vector<std::string>{"SOURCE", "layers.0.attn.wo_b.qweight", "layers.0.attn.wo_b.qzeros",
                                         "layers.0.attn.wo_b.scales", "layers.1.attn.wo_b.qweight",
                                         "layers.1.attn.wo_b.qzeros", "layers.1.attn.wo_b.scales",
                                         "mtp.0.attn.wo_b.qweight", "mtp.0.attn.wo_b.qzeros",
                                         "mtp.0.attn.wo_b.scales"});
  CHECK_THAT(result.out,
             Catch::Contains("  layers.0.attn.wo_b.qweight  bytes: 65536 -> 131072; shape: [64, 256] -> "
                             "[128, 256]; slice: dim0 2x64 -> whole\n"));
  CHECK_THAT(result.out,
             Catch::EndsWith("\n9 placed differently, 0 only in " + p.before + ", 0 only in " + p.after +
                             ", 198 the same; 0 plan-level changes (of 207 source tensors in " + p.before +
                             ", 207 in " + p.after + ")\n"));

  const auto json = diff({p.before, p.after, "--format", "json"});
  CHECK(json.exit_code == 1);
  const auto doc = nlohmann::json::parse(json.out);
  CHECK(doc["tensors"].size() == 9);
  CHECK(doc["totals"]["placed_differently"] == 9);

  const auto same = diff({p.after, p.after});
  CHECK(same.exit_code == 0);
  CHECK_THAT(same.out, Catch::EndsWith("\nthe plans place all 207 source tensors the same way\n"));
  CHECK(nlohmann::json::parse(diff({p.before, p.before, "--format", "json"}).out)["differ"] == false);
}

TEST_CASE("diff: a skip added by an edit is a change of the skipped tensor only") {
  Plans p;
  make_plans(p, "    match: '^mtp\\..*emb'", "    match: '^mtp\\..*emb|^mtp\\.0\\.norm\\.weight$'");
  const auto result = diff({p.before, p.after});
  INFO(result.out << result.err);
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.out, Catch::Contains("\nplaced differently: 1 source tensor\n"));
  CHECK_THAT(result.out, Catch::Contains("  mtp.0.norm.weight  placement: placed on all -> skipped\n"));
}

TEST_CASE("diff refuses what is not a readable plan: exit 4 or 5, the file named") {
  Plans p;
  make_plans(p, "  wo_b:         {split: in}", "  wo_b:         {split: in}");
  const std::string text = read_file(p.before);
  write_file(p.dir / "truncated.json", text.substr(0, text.size() / 2));
  write_file(p.dir / "inspect.json",
             run_command({shardwise_binary(), "inspect", (p.dir / "in").string(), "--format", "json"}).out);
  struct Case {
    std::string file;
    int exit_code;
    std::string message;
  };
  const Case cases[] = {
      {(p.dir / "truncated.json").string(), 4, "truncated.json: not valid JSON: parse error at line "},
      {(p.dir / "inspect.json").string(), 4,
       "inspect.json: not a shardwise plan: no \"format\": \"shardwise-plan\""},
      {(p.dir / "missing.json").string(), 5,
       "cannot read the plan " + (p.dir / "missing.json").string() + ": No such file"},
  };
  for (const Case& c : cases) {
    const auto result = diff({p.before, c.file});
    INFO(result.err);
    CHECK(result.exit_code == c.exit_code);
    CHECK(result.out.empty());
    CHECK_THAT(result.err, Catch::Contains(c.message));
  }
  CHECK(diff({p.before}).exit_code == 2);
  CHECK(diff({p.before, p.after}).exit_code == 0);  // the "edit" changed nothing
}

TEST_CASE("diff compares every part of a fused output under its own source, not only the first") {
  TempDir dir;
  // Three parts of 8 x 4 BF16 rows; rank r's fused x.qkv.weight is cat(q_r, k_r, v_r).
  nlohmann::json header = nlohmann::json::object();
  std::uint64_t offset = 0;
  for (const char* part : {"q", "k", "v"}) {
    header[std::string("x.") + part + ".weight"] = {
        {"dtype", "BF16"}, {"shape", {8, 4}}, {"data_offsets", {offset, offset + 64}}};
    offset += 64;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  for (std::size_t i = 0; i < 8; ++i) file[i] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  std::filesystem::create_directories(dir / "in");
  write_file(dir / "in" / "model.safetensors", file + text + std::string(offset, '\x01'));
  const std::string rules = R"(shardwise: 1
name: fused-diff
output: {file: "r{rank}.safetensors"}
keys:
  - {match: '\.(?P<key>[a-z]+)\.weight$'}
table:
  q: {split: out}
  k: {split: out}
  v: {split: V}
fuse:
  - {name: qkv, match: '^(?P<m>[a-z]+)\.(?P<part>q|k|v)\.weight$', output: '{m}.qkv.weight', parts: [q, k, v]}
)";
  const auto plan_with = [&](const std::string& name, const std::string& v_split) {
    std::string text_rules = rules;
    text_rules.replace(text_rules.find("split: V"), 8, "split: " + v_split);
    write_file(dir / (name + ".yaml"), text_rules);
    const auto result = run_command({shardwise_binary(), "plan", "-i", (dir / "in").string(), "-m", "2",
                                     "--rules", (dir / (name + ".yaml")).string(), "--format", "json"});
    INFO(result.err);
    REQUIRE(result.exit_code == 0);
    write_file(dir / (name + ".json"), result.out);
    return (dir / (name + ".json")).string();
  };
  const std::string before = plan_with("before", "out");
  const std::string after = plan_with("after", "replicate");
  // The third part changed: its row names its own source and what changed; q and k are the same.
  const auto result = diff({before, after});
  INFO(result.out << result.err);
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.out, Catch::Contains("  x.v.weight ") && Catch::Contains("slice: dim0 2x4 -> whole"));
  CHECK_THAT(result.out, !Catch::Contains("  x.q.weight ") && !Catch::Contains("  x.k.weight "));
  CHECK(diff({before, before}).exit_code == 0);
}
