// `convert --ranks`, `--distributed` and `--resume` as users run them: the real binary, launched by
// hand with each launcher's variables, by `mpirun -n 2`, and killed with SIGKILL mid-run.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::Args;
using shardwise::test::convert_args;
using shardwise::test::folder_files;
using shardwise::test::generate_checkpoint;
using shardwise::test::read_file;
using shardwise::test::run_command;
using shardwise::test::TempDir;

namespace {

// Runs `argv` with exactly `env` as its environment (and a PATH), through env(1).
shardwise::test::CommandResult run_with_env(const std::map<std::string, std::string>& env, const Args& argv) {
  Args args = {"/usr/bin/env", "-i", "PATH=/usr/bin:/bin"};
  for (const auto& [name, value] : env) args.push_back(name + "=" + value);
  args.insert(args.end(), argv.begin(), argv.end());
  return run_command(args);
}

std::set<std::string> rank_files_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("model", 0) == 0) names.insert(name);
  }
  return names;
}

std::string rank_file(std::size_t rank, std::size_t mp) {
  return "model" + std::to_string(rank) + "-mp" + std::to_string(mp) + ".safetensors";
}

// Which rank files each of `processes` should write, worked out here from a whole run's output:
// each file's tensor bytes (its size less the length prefix and header), rank 0 also carrying the
// side files; heaviest first to the least-loaded process, ties to the lower index.
std::vector<std::set<std::string>> expected_shares(const fs::path& whole, std::size_t mp,
                                                   std::size_t processes) {
  std::vector<std::uint64_t> weight(mp);
  for (std::size_t r = 0; r < mp; ++r) {
    const std::string bytes = read_file(whole / rank_file(r, mp));
    std::uint64_t header = 0;
    for (std::size_t i = 0; i < 8; ++i)
      header |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
    weight[r] = bytes.size() - 8 - header;
  }
  for (const auto& e : fs::directory_iterator(whole)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("model", 0) != 0 && name != "shardwise-manifest.json")
      weight[0] += fs::file_size(e.path());
  }
  std::vector<std::size_t> order(mp);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return weight[a] > weight[b]; });
  std::vector<std::uint64_t> load(processes, 0);
  std::vector<std::set<std::string>> shares(processes);
  for (const std::size_t r : order) {
    const auto p = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    load[p] += weight[r];
    shares[p].insert(rank_file(r, mp));
  }
  return shares;
}

int verify_manifest_only(const fs::path& out) {
  return run_command({shardwise::test::shardwise_binary(), "verify", "--manifest-only", "--save-path",
                      out.string(), "--quiet"})
      .exit_code;
}

TEST_CASE(
    "cli: --distributed takes its place from each launcher's variables, the shares add up to a whole run") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--files", "3"});
  REQUIRE(run_command(convert_args(dir / "in", dir / "whole", {})).exit_code == 0);
  const auto expected = folder_files(dir / "whole");
  const auto shares = expected_shares(dir / "whole", 4, 2);
  REQUIRE(!shares[0].empty());
  REQUIRE(!shares[1].empty());
  const std::vector<std::pair<std::string, std::string>> launchers = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
      {"PMI_RANK", "PMI_SIZE"},
      {"SLURM_PROCID", "SLURM_NTASKS"},
      {"RANK", "WORLD_SIZE"},
  };
  for (const auto& [index_var, count_var] : launchers) {
    CAPTURE(index_var);
    const fs::path out = dir / ("out-" + index_var);
    // Process 1 first: it cannot complete the manifest; process 0 then does.
    const auto one =
        run_with_env({{index_var, "1"}, {count_var, "2"}}, convert_args(dir / "in", out, {"--distributed"}));
    REQUIRE(one.exit_code == 0);
    CHECK(rank_files_in(out) == shares[1]);
    const auto zero =
        run_with_env({{index_var, "0"}, {count_var, "2"}}, convert_args(dir / "in", out, {"--distributed"}));
    REQUIRE(zero.exit_code == 0);
    CHECK(folder_files(out) == expected);
    CHECK(verify_manifest_only(out) == 0);
  }
}

TEST_CASE("cli: --distributed without a launcher, or with values that do not fit, is a usage error") {
  TempDir dir;
  generate_checkpoint(dir / "in");
  struct Case {
    std::map<std::string, std::string> env;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{},
       "shardwise: error: --distributed: no launcher variables found: set one of the pairs "
       "OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE, PMI_RANK/PMI_SIZE, SLURM_PROCID/SLURM_NTASKS, "
       "RANK/WORLD_SIZE "
       "(mpirun, srun and torchrun set them)\n"},
      {{{"RANK", "2"}, {"WORLD_SIZE", "2"}},
       "shardwise: error: --distributed: RANK=2 is not below WORLD_SIZE=2\n"},
      {{{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "2"}},
       "shardwise: error: --distributed: SLURM_PROCID=x and SLURM_NTASKS=2 are not both non-negative "
       "integers\n"},
  };
  for (const Case& c : cases) {
    const auto r = run_with_env(c.env, convert_args(dir / "in", dir / "out", {"--distributed"}));
    CHECK(r.exit_code == 2);
    CHECK(r.err == c.message);
  }
  CHECK(!fs::exists(dir / "out"));
}

TEST_CASE("cli: --ranks writes only those files, the runs together equal a whole run") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--files", "2"});
  REQUIRE(run_command(convert_args(dir / "in", dir / "whole", {})).exit_code == 0);
  const auto first = run_command(convert_args(dir / "in", dir / "out", {"--ranks", "1,3"}));
  REQUIRE(first.exit_code == 0);
  CHECK(rank_files_in(dir / "out") == std::set<std::string>{rank_file(1, 4), rank_file(3, 4)});
  CHECK(fs::exists(dir / "out" / "shardwise-manifest.ranks-1,3.json"));
  CHECK(verify_manifest_only(dir / "out") == 6);  // incomplete manifest
  const auto second = run_command(convert_args(dir / "in", dir / "out", {"--ranks", "0-1,2"}));
  REQUIRE(second.exit_code == 0);
  CHECK(folder_files(dir / "out") == folder_files(dir / "whole"));  // rank 1 written twice, same bytes
  CHECK(verify_manifest_only(dir / "out") == 0);

  // Without -q the summary says where the manifest stands.
  Args args = convert_args(dir / "in", dir / "loud", {"--ranks", "3"});
  args.erase(std::find(args.begin(), args.end(), "-q"));
  const auto summary = run_command(args);
  CHECK(
      summary.err.find("\nranks 3: the manifest waits for ranks 0-2 (the run that finishes the last of them "
                       "completes it)\n") != std::string::npos);
}

TEST_CASE("cli: bad --ranks are usage errors quoting the list") {
  TempDir dir;
  generate_checkpoint(dir / "in");
  struct Case {
    Args args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--ranks", "1-"},
       "shardwise: error: --ranks 1-: '1-' is not a rank or a range of ranks (expected ranks like 1,3 or "
       "0-3,6)\n"},
      {{"--ranks", "0,4"},
       "shardwise: error: --ranks 0,4: rank 4 is out of range (model parallel 4: ranks 0-3)\n"},
      {{"--ranks", "2-1"}, "shardwise: error: --ranks 2-1: the range 2-1 is reversed (write 1-2)\n"},
  };
  for (const Case& c : cases) {
    const auto r = run_command(convert_args(dir / "in", dir / "out", c.args));
    CHECK(r.exit_code == 2);
    CHECK(r.err == c.message);
  }
  const auto both = run_command(convert_args(dir / "in", dir / "out", {"--ranks", "1", "--distributed"}));
  CHECK(both.exit_code == 2);
  CHECK(both.err.find("excludes") != std::string::npos);
  CHECK(!fs::exists(dir / "out"));
}

// The first `name` in a folder of PATH that is an executable file, or "".
std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream folders(path != nullptr ? path : "");
  for (std::string folder; std::getline(folders, folder, ':');) {
    const fs::path candidate = fs::path(folder.empty() ? "." : folder) / name;
    if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate)) return candidate.string();
  }
  return "";
}

TEST_CASE("cli: mpirun -n 2 convert --distributed writes what a single process writes, byte for byte") {
  const std::string mpirun = find_in_path("mpirun");
  if (mpirun.empty()) {
    FAIL("mpirun is not on PATH: install Open MPI (scripts/install-deps --test installs openmpi-bin)");
  }
  TempDir dir;
  generate_checkpoint(dir / "in", {"--files", "3", "--layers", "3"});
  REQUIRE(run_command(convert_args(dir / "in", dir / "single", {})).exit_code == 0);
  Args args = {mpirun, "-n", "2", "--oversubscribe"};
  if (::geteuid() == 0) args.push_back("--allow-run-as-root");
  const Args convert = convert_args(dir / "in", dir / "mpi", {"--distributed"});
  args.insert(args.end(), convert.begin(), convert.end());
  const auto r = run_command(args);
  CAPTURE(r.out, r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(folder_files(dir / "mpi") == folder_files(dir / "single"));
  CHECK(verify_manifest_only(dir / "mpi") == 0);
}

// The files the manifest in `out` records as finished (with checksums), if it can be read.
std::set<std::string> finished_in_manifest(const fs::path& out) {
  std::set<std::string> files;
  const auto json = nlohmann::json::parse(read_file(out / "shardwise-manifest.json"), nullptr, false);
  if (json.is_discarded()) return files;
  for (const auto& entry : json["outputs"]) {
    if (entry.contains("xxh3")) files.insert(entry["file"].get<std::string>());
  }
  return files;
}

std::pair<ino_t, std::int64_t> inode_and_mtime(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return {st.st_ino, std::int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

TEST_CASE(
    "cli: convert killed with SIGKILL after some files, then --resume: the fresh run's bytes, finished "
    "files untouched") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--layers", "8", "--experts", "64"});
  REQUIRE(run_command(convert_args(dir / "in", dir / "fresh", {}, "8", "64")).exit_code == 0);
  const fs::path out = dir / "out";
  const pid_t pid =
      shardwise::test::spawn_command(convert_args(dir / "in", out, {"--threads", "1"}, "8", "64"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int status = 0;
  bool exited = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    if (fs::exists(out / "shardwise-manifest.json") && !finished_in_manifest(out).empty()) break;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0) {
    }
  }
  REQUIRE(WIFSIGNALED(status));  // else the checkpoint is too small to catch the run mid-way
  const std::set<std::string> finished = finished_in_manifest(out);
  REQUIRE(!finished.empty());
  REQUIRE(finished.size() < 8);
  std::map<std::string, std::pair<ino_t, std::int64_t>> before;
  for (const std::string& name : finished) before[name] = inode_and_mtime(out / name);

  const auto resumed = run_command(convert_args(dir / "in", out, {"--resume"}, "8", "64"));
  REQUIRE(resumed.exit_code == 0);
  for (const auto& [name, identity] : before) {
    CAPTURE(name);
    CHECK(inode_and_mtime(out / name) == identity);
  }
  CHECK(folder_files(out) == folder_files(dir / "fresh"));
  CHECK(verify_manifest_only(out) == 0);
  Args loud = convert_args(dir / "in", out, {"--resume"}, "8", "64");
  loud.erase(std::find(loud.begin(), loud.end(), "-q"));
  CHECK(run_command(loud).err.find("; kept 8 files an earlier run finished") != std::string::npos);
}

TEST_CASE("cli: --resume refuses when the rules or the parameters changed, and says what changed") {
  TempDir dir;
  generate_checkpoint(dir / "in");
  REQUIRE(run_command(convert_args(dir / "in", dir / "out", {})).exit_code == 0);
  const std::string manifest = (fs::canonical(dir / "out") / "shardwise-manifest.json").string();
  const std::string tail = " (since " + manifest + " was written; convert without --resume to start over)\n";

  const auto mp = run_command(convert_args(dir / "in", dir / "out", {"--resume"}, "2"));
  CHECK(mp.exit_code == 5);
  CHECK(mp.err == "shardwise: error: cannot resume: the parameter mp changed: 4 -> 2" + tail);

  // The bundled rules with one more comment line: the same rules, another text.
  const std::string rules =
      read_file(fs::path(shardwise::test::source_dir()) / "rules" / "deepseek-v4-w4a16.yaml");
  shardwise::test::write_file(dir / "edited.yaml", rules + "# edited\n");
  const auto edited = run_command(
      convert_args(dir / "in", dir / "out", {"--resume", "--rules", (dir / "edited.yaml").string()}));
  CHECK(edited.exit_code == 5);
  CHECK(edited.err.rfind(
            "shardwise: error: cannot resume: the rules changed (manifest: deepseek-v4-w4a16 xxh3 ", 0) == 0);
  CHECK(edited.err.find(", now: deepseek-v4-w4a16 xxh3 ") != std::string::npos);
  CHECK(edited.err.size() > tail.size());
  CHECK(edited.err.compare(edited.err.size() - tail.size(), tail.size(), tail) == 0);
}

}  // namespace
