// Splitting the work: rank lists (--ranks), the launchers' variables (--distributed), balancing by
// bytes, and partial runs writing into one folder until the manifest is complete.
#include <shardwise/output/work_share.hpp>

#include <map>
#include <optional>
#include <set>

#include <catch2/catch.hpp>

#include <shardwise/convert/converter.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/output/manifest.hpp>

#include "output/four_ranks.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;
using Ranks = std::vector<std::uint64_t>;

TEST_CASE("rank lists: single ranks, ranges, duplicates, any order") {
  struct Case {
    std::string text;
    std::uint64_t mp;
    Ranks ranks;
    std::string canonical;
  };
  const std::vector<Case> cases = {
      {"1,3", 8, {1, 3}, "1,3"},
      {"0-3,6", 8, {0, 1, 2, 3, 6}, "0-3,6"},
      {"6,0-3", 8, {0, 1, 2, 3, 6}, "0-3,6"},
      {"3,1,1,2-3", 4, {1, 2, 3}, "1-3"},
      {"5-5", 6, {5}, "5"},
      {"0", 1, {0}, "0"},
      {"0-1,3-4,7", 8, {0, 1, 3, 4, 7}, "0-1,3-4,7"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    const Ranks ranks = output::parse_rank_list(c.text, c.mp);
    CHECK(ranks == c.ranks);
    CHECK(output::format_rank_list(ranks) == c.canonical);
  }
  CHECK(output::format_rank_list(Ranks{}) == "none");
}

TEST_CASE("rank lists: each mistake is a usage error quoting the list") {
  struct Bad {
    std::string text;
    std::string message;
  };
  const std::string expected = " (expected ranks like 1,3 or 0-3,6)";
  const std::vector<Bad> bad = {
      {"", "--ranks : no ranks given" + expected},
      {"1,,2", "--ranks 1,,2: empty item" + expected},
      {"1,", "--ranks 1,: empty item" + expected},
      {"a", "--ranks a: 'a' is not a rank or a range of ranks" + expected},
      {"-1", "--ranks -1: '-1' is not a rank or a range of ranks" + expected},
      {"1-", "--ranks 1-: '1-' is not a rank or a range of ranks" + expected},
      {"1 ,2", "--ranks 1 ,2: '1 ' is not a rank or a range of ranks" + expected},
      {"0-2-3", "--ranks 0-2-3: '0-2-3' is not a rank or a range of ranks" + expected},
      {"3-1", "--ranks 3-1: the range 3-1 is reversed (write 1-3)"},
      {"0,8", "--ranks 0,8: rank 8 is out of range (model parallel 8: ranks 0-7)"},
      {"6-9", "--ranks 6-9: rank 9 is out of range (model parallel 8: ranks 0-7)"},
      {"99999999999999999999",
       "--ranks 99999999999999999999: '99999999999999999999' is not a rank or a range of "
       "ranks" +
           expected},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.text);
    try {
      output::parse_rank_list(b.text, 8);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      CHECK(std::string(e.what()) == b.message);
    }
  }
}

using Env = std::map<std::string, std::string>;

output::Launch launch_from(const Env& env) {
  return output::launch_from_environment([&](const char* name) -> const char* {
    const auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST_CASE("launchers: the first complete pair of variables, in the order MPI, PMI, Slurm, torchrun") {
  struct Case {
    Env env;
    std::uint64_t index;
    std::uint64_t count;
    std::string source;
  };
  const std::vector<Case> cases = {
      {{{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}},
       1,
       2,
       "OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE"},
      {{{"PMI_RANK", "3"}, {"PMI_SIZE", "4"}}, 3, 4, "PMI_RANK/PMI_SIZE"},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "16"}}, 0, 16, "SLURM_PROCID/SLURM_NTASKS"},
      {{{"RANK", "7"}, {"WORLD_SIZE", "8"}}, 7, 8, "RANK/WORLD_SIZE"},
      // mpirun inside a Slurm allocation: the batch step's Slurm variables describe the allocation.
      {{{"OMPI_COMM_WORLD_RANK", "1"},
        {"OMPI_COMM_WORLD_SIZE", "2"},
        {"SLURM_PROCID", "0"},
        {"SLURM_NTASKS", "1"}},
       1,
       2,
       "OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE"},
      {{{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}, {"RANK", "0"}, {"WORLD_SIZE", "4"}}, 1, 2, "PMI_RANK/PMI_SIZE"},
      // Half a pair is skipped.
      {{{"OMPI_COMM_WORLD_RANK", "5"}, {"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "3"}},
       2,
       3,
       "SLURM_PROCID/SLURM_NTASKS"},
      {{{"SLURM_NTASKS", "3"}, {"RANK", "0"}, {"WORLD_SIZE", "1"}}, 0, 1, "RANK/WORLD_SIZE"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.source);
    const output::Launch launch = launch_from(c.env);
    CHECK(launch.index == c.index);
    CHECK(launch.count == c.count);
    CHECK(launch.source == c.source);
  }
}

TEST_CASE("launchers: no complete pair, or values that do not fit, are usage errors") {
  struct Bad {
    Env env;
    std::string message;
  };
  const std::string none =
      "--distributed: no launcher variables found: set one of the pairs "
      "OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE, "
      "PMI_RANK/PMI_SIZE, SLURM_PROCID/SLURM_NTASKS, RANK/WORLD_SIZE (mpirun, srun and torchrun set them)";
  const std::vector<Bad> bad = {
      {{}, none},
      {{{"RANK", "0"}, {"PMI_SIZE", "2"}}, none},
      {{{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "2"}},
       "--distributed: OMPI_COMM_WORLD_RANK=2 is not below OMPI_COMM_WORLD_SIZE=2"},
      {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "0"}},
       "--distributed: SLURM_PROCID=0 is not below SLURM_NTASKS=0"},
      {{{"RANK", "one"}, {"WORLD_SIZE", "2"}},
       "--distributed: RANK=one and WORLD_SIZE=2 are not both non-negative integers"},
      {{{"PMI_RANK", "1"}, {"PMI_SIZE", ""}},
       "--distributed: PMI_RANK=1 and PMI_SIZE= are not both non-negative integers"},
      // The first complete pair decides, even when a later one would fit.
      {{{"PMI_RANK", "4"}, {"PMI_SIZE", "4"}, {"RANK", "0"}, {"WORLD_SIZE", "4"}},
       "--distributed: PMI_RANK=4 is not below PMI_SIZE=4"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.message);
    try {
      launch_from(b.env);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      CHECK(std::string(e.what()) == b.message);
    }
  }
}

TEST_CASE("balancing by bytes: heaviest first to the least loaded process, ties by index") {
  struct Case {
    std::vector<std::uint64_t> weights;
    std::uint64_t processes;
    std::vector<std::uint64_t> owner;
  };
  const std::vector<Case> cases = {
      {{10, 10, 10, 10}, 2, {0, 1, 0, 1}},
      {{100, 1, 1, 1, 1}, 2, {0, 1, 1, 1, 1}},  // by bytes, not by count
      {{5, 9, 4, 7}, 2, {1, 0, 0, 1}},          // 9->0, 7->1, 5->1 (7<9), 4->0 (9<12)
      {{3, 3, 3}, 1, {0, 0, 0}},
      {{8, 8}, 4, {0, 1}},                                      // more processes than files: 2 and 3 get none
      {{1, 2, 3, 4, 5, 6, 7, 8}, 3, {1, 0, 0, 1, 2, 2, 1, 0}},  // 8,3,2 | 7,4,1 | 6,5
      {{}, 3, {}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.weights, c.processes);
    CHECK(output::balance_by_bytes(c.weights, c.processes) == c.owner);
  }
}

// Every file of a folder, by name, with its bytes.
std::map<std::string, std::string> folder_files(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files[e.path().filename().string()] = read_file(e.path());
  return files;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

TEST_CASE(
    "rank subsets: each run writes only its files, the run that completes the set completes the manifest") {
  FourRanks s;
  const auto whole = s.convert("whole");
  REQUIRE(whole.manifest_complete);

  convert::ConvertOptions first = s.options("parts");
  first.run.ranks = Ranks{1, 3};
  const auto one = convert::convert_plan(s.plan, first);
  CHECK(one.ranks == Ranks{1, 3});
  CHECK(one.files == 2);
  CHECK(one.side_files == 0);
  CHECK(!one.manifest_complete);
  CHECK(one.waiting_for == Ranks{0, 2});
  CHECK(names_in(s.dir / "parts") == std::set<std::string>{"model1-mp4.safetensors", "model3-mp4.safetensors",
                                                           "shardwise-manifest.json",
                                                           "shardwise-manifest.ranks-1,3.json"});
  CHECK(!output::read_manifest((s.dir / "parts").string())->complete);
  CHECK(output::format_summary(one).find(
            "\nranks 1,3: the manifest waits for ranks 0,2 (the run that finishes the "
            "last of them completes it)") != std::string::npos);

  convert::ConvertOptions second = s.options("parts");
  second.run.ranks = Ranks{0, 2};
  const auto two = convert::convert_plan(s.plan, second);
  CHECK(two.side_files == 1);
  CHECK(two.manifest_complete);
  CHECK(two.waiting_for.empty());
  CHECK(output::format_summary(two).find("\nranks 0,2: the manifest is complete") != std::string::npos);
  CHECK(folder_files(s.dir / "parts") == folder_files(s.dir / "whole"));
}

TEST_CASE("distributed: the processes' shares cover every file once, balanced by bytes, whatever the order") {
  FourRanks s;
  s.convert("whole");
  // Rank 0 also carries the side file; ranks are deliberately of different sizes.
  const std::vector<std::uint64_t> weights = output::rank_weights(s.plan);
  REQUIRE(weights.size() == 4);
  CHECK(weights[0] == s.plan.outputs[0].bytes + 16);
  for (const std::uint64_t count : {1, 2, 3, 4, 6}) {
    CAPTURE(count);
    std::set<std::uint64_t> seen;
    std::vector<std::uint64_t> owner = output::balance_by_bytes(weights, count);
    for (std::uint64_t index = 0; index < count; ++index) {
      const Ranks ranks = output::ranks_of_process(s.plan, {index, count, "test"});
      for (const std::uint64_t r : ranks) {
        CHECK(owner[r] == index);
        CHECK(seen.insert(r).second);
      }
    }
    CHECK(seen.size() == 4);
  }
  // The last process first, then process 0: the folder ends as a whole run leaves it.
  for (const std::uint64_t count : {2, 3, 6}) {
    CAPTURE(count);
    const std::string out = "dist" + std::to_string(count);
    for (std::uint64_t index = count; index-- > 0;) {
      convert::ConvertOptions options = s.options(out);
      options.run.launch = output::Launch{index, count, "test"};
      const auto summary = convert::convert_plan(s.plan, options);
      CHECK(summary.manifest_complete == (index == 0));
    }
    CHECK(folder_files(s.dir / out) == folder_files(s.dir / "whole"));
  }
}

TEST_CASE("distributed: process 0 gives up waiting for the others after --manifest-wait, naming the ranks") {
  FourRanks s;
  convert::ConvertOptions options = s.options("out");
  options.run.launch = output::Launch{0, 2, "test"};
  options.run.manifest_wait = std::chrono::seconds(1);
  const Ranks others = output::ranks_of_process(s.plan, {1, 2, "test"});
  try {
    convert::convert_plan(s.plan, options);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::io);
    CHECK(std::string(e.what()) == "gave up after 1 s waiting for the other processes to write ranks " +
                                       output::format_rank_list(others) + " into " +
                                       fs::canonical(s.dir / "out").string() +
                                       ": the last of them to finish completes the manifest; if one failed, "
                                       "rerun the job with --resume");
  }
  // Process 1 finishing later completes the manifest all the same.
  options.run.launch = output::Launch{1, 2, "test"};
  CHECK(convert::convert_plan(s.plan, options).manifest_complete);
  CHECK(output::read_manifest((s.dir / "out").string())->complete);
}

TEST_CASE("partial runs leave other runs' temporaries alone, a whole run removes every stale one") {
  FourRanks s;
  fs::create_directories(s.dir / "out");
  const std::vector<std::string> others = {".model2-mp4.safetensors.partial",
                                           ".shardwise-manifest.ranks-2.json.partial",
                                           ".shardwise-manifest.json.ranks-2.partial"};
  for (const std::string& name : others) write_file(s.dir / "out" / name, "another process is writing this");
  write_file(s.dir / "out" / ".model0-mp4.safetensors.partial", "left by a killed run of ours");
  convert::ConvertOptions options = s.options("out");
  options.run.ranks = Ranks{0};
  convert::convert_plan(s.plan, options);
  for (const std::string& name : others) CHECK(fs::exists(s.dir / "out" / name));
  CHECK(!fs::exists(s.dir / "out" / ".model0-mp4.safetensors.partial"));
  s.convert("out");
  for (const std::string& name : others) CHECK(!fs::exists(s.dir / "out" / name));
}

TEST_CASE("a partial run of another plan replaces that plan's manifest and fragments") {
  FourRanks s;
  s.convert("out");
  convert::ConvertOptions options = s.options("out");
  options.run.ranks = Ranks{2};
  convert::convert_plan(s.plan, options);  // same plan: the complete manifest stays
  CHECK(output::read_manifest((s.dir / "out").string())->complete);
  CHECK(!fs::exists(s.dir / "out" / "shardwise-manifest.ranks-2.json"));  // folded into it at once

  options.rules.xxh3 = 99;  // another plan
  options.run.ranks = Ranks{1};
  const auto one = convert::convert_plan(s.plan, options);
  CHECK(!one.manifest_complete);
  const auto manifest = output::read_manifest((s.dir / "out").string());
  CHECK(!manifest->complete);
  CHECK(manifest->rules.xxh3 == 99);
  options.run.ranks = Ranks{0, 2, 3};
  CHECK(convert::convert_plan(s.plan, options).manifest_complete);
  CHECK(names_in(s.dir / "out").count("shardwise-manifest.ranks-1.json") == 0);
}

}  // namespace
}  // namespace shardwise::test
