// `shardwise rules scaffold` end to end: the printed draft passes `rules check` and plans its
// checkpoint; a draft that does not plan at the asked mp is printed but the exit code says so;
// a checkpoint that cannot be opened is an I/O error, as for `plan`.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "support/cli.hpp"
#include "support/support.hpp"

using shardwise::test::generate_checkpoint;
using shardwise::test::run_shardwise;
using shardwise::test::TempDir;
using shardwise::test::write_file;

namespace {

// A MoE checkpoint over 2 files with an index and tokenizer files, 4 experts per layer.
const shardwise::test::Args kCheckpoint = {"--layers", "2",           "--experts", "4",  "--files",      "2",
                                           "--index",  "--tokenizer", "--style",   "hf", "--header-only"};

}  // namespace

TEST_CASE("rules scaffold: the draft checks and plans its checkpoint") {
  TempDir ckpt, work;
  generate_checkpoint(ckpt.path(), kCheckpoint);
  const auto scaffold = run_shardwise({"rules", "scaffold", ckpt.str(), "-m", "4"});
  INFO(scaffold.err);
  REQUIRE(scaffold.exit_code == 0);
  CHECK(scaffold.out.find("  n_experts:\n    default: 4\n") != std::string::npos);
  CHECK(scaffold.out.find("side_files: ['tokenizer.json', 'tokenizer_config.json']") != std::string::npos);
  const std::string draft = (work / "draft.yaml").string();
  write_file(draft, scaffold.out);

  const auto check = run_shardwise({"rules", "check", draft});
  INFO(check.err);
  CHECK(check.exit_code == 0);
  for (const std::string mp : {"1", "2", "4"}) {
    const auto plan = run_shardwise({"plan", "-i", ckpt.str(), "--rules", draft, "-m", mp});
    INFO(plan.err);
    CHECK(plan.exit_code == 0);
  }
}

TEST_CASE("rules scaffold: a draft that does not plan at the asked mp is an error") {
  TempDir ckpt;
  generate_checkpoint(ckpt.path(), kCheckpoint);
  const auto scaffold = run_shardwise({"rules", "scaffold", ckpt.str(), "-m", "3"});
  CHECK(scaffold.exit_code == 4);
  CHECK(scaffold.out.find("ownership:") != std::string::npos);  // printed, to be edited
  CHECK(scaffold.err.find("does not plan it yet") != std::string::npos);
  CHECK(scaffold.err.find("n_experts=4 is not a multiple of mp=3") != std::string::npos);
}

TEST_CASE("rules scaffold: usage and input errors") {
  TempDir dir;
  CHECK(run_shardwise({"rules", "scaffold"}).exit_code == 2);
  CHECK(run_shardwise({"rules", "scaffold", dir.str(), "-m", "0"}).exit_code == 2);
  const auto missing = run_shardwise({"rules", "scaffold", (dir / "absent").string()});
  CHECK(missing.exit_code == 5);  // as for `plan`: the OS refused to open it
  CHECK(missing.out.empty());
}
