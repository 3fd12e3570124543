// Counts checked against the checkpoint, end to end: `plan`, `convert` and `verify` refuse a
// missing, wrong or default --n-experts, and a DeepSeek-V4.1 "DSpark"-shaped checkpoint (MTP
// blocks with fewer experts than the layers) under the bundled rules, naming the parameter, the
// scopes and the counts; a conversion refused so leaves no rank file. A rules file that takes each
// scope's count from the checkpoint (`default: infer`) places such a checkpoint right.

#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::generate_checkpoint;
using shardwise::test::holds_rank_file;
using shardwise::test::run_shardwise;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

const std::string kRule = "ownership[experts] at <bundled>/deepseek-v4-w4a16.yaml:113:5";

}  // namespace

TEST_CASE("the count of experts is required (--n-experts), as in the reference converter") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--layers", "1", "--experts", "4", "--mtp-blocks", "1"});
  for (const char* command : {"plan", "convert", "verify"}) {
    INFO(command);
    std::vector<std::string> args = {command, "-i", (dir / "in").string(), "-m", "2"};
    if (std::string(command) != "plan") args.insert(args.end(), {"-o", (dir / "out").string()});
    const auto r = run_shardwise(args);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("--n-experts is required: routed experts per MoE layer"));
    CHECK(!holds_rank_file(dir / "out"));
  }
}

TEST_CASE("a wrong --n-experts is refused by plan, convert and verify, naming the scopes and counts") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--layers", "1", "--experts", "16", "--mtp-blocks", "1"});
  const std::string in = (dir / "in").string();
  for (const char* experts : {"32", "8"}) {
    INFO(experts);
    const auto planned = run_shardwise({"plan", "-i", in, "-m", "4", "--n-experts", experts});
    CHECK(planned.exit_code == 4);
    CHECK(planned.out.empty());
    for (const char* scope : {"layers.0.ffn.experts", "mtp.0.ffn.experts"}) {
      CHECK_THAT(planned.err,
                 Catch::Contains(std::string("\n  ") + scope +
                                 ": 16 experts (0-15) in the checkpoint, but n_experts=" + experts +
                                 " (from --n-experts " + experts + "; " + kRule + ")\n"));
    }
    const auto converted =
        run_shardwise({"convert", "-i", in, "-o", (dir / "out").string(), "-m", "4", "--n-experts", experts});
    CHECK(converted.exit_code == 4);
    CHECK(!holds_rank_file(dir / "out"));
  }
  // verify re-plans: an output made with the right count does not pass with a wrong one.
  REQUIRE(
      run_shardwise({"convert", "-i", in, "-o", (dir / "out").string(), "-m", "4", "--n-experts", "16", "-q"})
          .exit_code == 0);
  CHECK(
      run_shardwise({"verify", "-i", in, "-o", (dir / "out").string(), "-m", "4", "--n-experts", "16", "-q"})
          .exit_code == 0);
  const auto verified =
      run_shardwise({"verify", "-i", in, "-o", (dir / "out").string(), "-m", "4", "--n-experts", "32"});
  CHECK(verified.exit_code == 4);
  CHECK_THAT(verified.err,
             Catch::Contains("layers.0.ffn.experts: 16 experts (0-15) in the checkpoint, but n_experts=32"));
}

TEST_CASE(
    "a DSpark-shaped checkpoint is refused by the bundled rules, and placed right by an inferring rules "
    "file") {
  TempDir dir;
  generate_checkpoint(dir / "in",
                      {"--layers", "1", "--experts", "16", "--mtp-blocks", "3", "--mtp-experts", "8"});
  const std::string in = (dir / "in").string();
  const auto refused = run_shardwise({"plan", "-i", in, "-m", "4", "--n-experts", "16"});
  CHECK(refused.exit_code == 4);
  for (const char* scope : {"mtp.0.ffn.experts", "mtp.1.ffn.experts", "mtp.2.ffn.experts"}) {
    CHECK_THAT(refused.err, Catch::Contains(std::string("\n  ") + scope +
                                            ": 8 experts (0-7) in the checkpoint, but "
                                            "n_experts=16 (from --n-experts 16; " +
                                            kRule + ")\n"));
  }
  CHECK_THAT(refused.err, Catch::Contains("default: infer"));
  CHECK(!holds_rank_file(dir / "out"));
  CHECK(run_shardwise({"convert", "-i", in, "-o", (dir / "out").string(), "-m", "4", "--n-experts", "16"})
            .exit_code == 4);
  CHECK(!holds_rank_file(dir / "out"));

  // The bundled rules with `default: infer` (the same lines, so the same locations).
  std::string rules = run_shardwise({"rules", "show"}).out;
  const std::string from = "    # no default:";
  REQUIRE(rules.find(from) != std::string::npos);
  rules.replace(rules.find(from), from.size(), "    default: infer #");
  write_file(dir / "infer.yaml", rules);
  const auto planned =
      run_shardwise({"plan", "-i", in, "-m", "4", "-r", (dir / "infer.yaml").string(), "--format", "json"});
  REQUIRE(planned.exit_code == 0);
  const nlohmann::json plan = nlohmann::json::parse(planned.out);
  std::map<std::string, std::uint64_t> rank;
  for (const auto& out : plan["outputs"]) {
    for (const auto& t : out["tensors"])
      rank[t["name"].get<std::string>()] = out["rank"].get<std::uint64_t>();
  }
  CHECK(rank.at("layers.0.ffn.experts.7.w1.qweight") == 1);  // 7 / (16 / 4)
  CHECK(rank.at("layers.0.ffn.experts.8.w1.qweight") == 2);
  CHECK(rank.at("mtp.0.ffn.experts.3.w1.qweight") == 1);  // 3 / (8 / 4)
  CHECK(rank.at("mtp.2.ffn.experts.7.w2.scales") == 3);
  CHECK(plan["notes"] ==
        nlohmann::json::array({"n_experts taken from the checkpoint, scope by scope ('default: "
                               "infer'): 8 in mtp.0.ffn.experts and 2 more scopes; 16 in "
                               "layers.0.ffn.experts"}));
  // A count given for an inferred parameter must agree with every scope.
  const auto disagree =
      run_shardwise({"plan", "-i", in, "-m", "4", "-r", (dir / "infer.yaml").string(), "--n-experts", "16"});
  CHECK(disagree.exit_code == 4);
  CHECK_THAT(disagree.err,
             Catch::Contains("mtp.1.ffn.experts: 8 experts (0-7) in the checkpoint, but n_experts=16"));
}
