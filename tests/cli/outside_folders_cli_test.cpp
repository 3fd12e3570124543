// Nothing read or written outside the folders a run is given, and bounded work on any rules file,
// through the real binary: names from a manifest stay in their folder, a link planted in the output
// folder is never written through, input files that lead out of the input folder are refused by
// name (a Hugging Face cache's snapshot -> blobs links aside, or with --allow-outside-links), and
// rules files that are FIFOs, not UTF-8 or alias bombs are refused with exit 3 before anything is
// created.

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::CommandResult;
using shardwise::test::folder_files;
using shardwise::test::read_file;
using shardwise::test::run_shardwise;
using shardwise::test::TempDir;
using shardwise::test::write_file;
using Args = std::vector<std::string>;

namespace {

void generate(const fs::path& out, Args extra = {}) {
  Args args = {"--out", out.string(), "--config", "tiny", "--layers", "2", "--experts", "8"};
  args.insert(args.end(), extra.begin(), extra.end());
  REQUIRE(shardwise::test::run_tool("gen_checkpoint", args).exit_code == 0);
}

CommandResult convert(const fs::path& in, const fs::path& out, Args extra = {}, const std::string& mp = "2") {
  Args args = {"convert", "-i", in.string(), "-o", out.string(), "--n-experts", "8", "-m", mp, "-q"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_shardwise(args);
}

unsigned mode_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<unsigned>(st.st_mode) & 0777u;
}

// A converted folder whose manifest is edited by `edit`.
void edit_manifest(const fs::path& folder, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json manifest = nlohmann::json::parse(read_file(folder / "shardwise-manifest.json"));
  edit(manifest);
  write_file(folder / "shardwise-manifest.json", manifest.dump(1));
}

TEST_CASE("reshard: side-file and rank-file names from the manifest must be single names in the folder") {
  TempDir dir;
  generate(dir / "in");
  const fs::path from = dir / "a" / "mp2";
  const fs::path out = dir / "b" / "out";
  REQUIRE(convert(dir / "in", from).exit_code == 0);
  const std::string tokenizer = read_file(from / "tokenizer.json");
  write_file(dir / "a" / "planted.txt", tokenizer);  // what `from/../planted.txt` names, checksum and all

  edit_manifest(from, [](nlohmann::json& m) { m["side_files"][0]["file"] = "../planted.txt"; });
  const CommandResult side =
      run_shardwise({"reshard", "--from", from.string(), "-o", out.string(), "-m", "4", "-q"});
  INFO(side.err);
  CHECK(side.exit_code == 4);
  CHECK_THAT(side.err,
             Catch::Contains(": not a shardwise manifest: side file \"../planted.txt\" is a path, not a "
                             "file name: the files it lists must be in its folder"));
  CHECK_FALSE(fs::exists(dir / "b" / "planted.txt"));
  CHECK_FALSE(fs::exists(out));

  for (const std::string& name :
       std::vector<std::string>{"../model0-mp2.safetensors", "..", "", std::string("a\0b", 3)}) {
    edit_manifest(from, [&](nlohmann::json& m) {
      m["side_files"][0]["file"] = "tokenizer.json";
      m["outputs"][0]["file"] = name;
    });
    const CommandResult rank =
        run_shardwise({"reshard", "--from", from.string(), "-o", out.string(), "-m", "4", "-q"});
    INFO(rank.err);
    CHECK(rank.exit_code == 4);
    CHECK_THAT(rank.err,
               Catch::Contains("not a shardwise manifest: output file " + nlohmann::json(name).dump()));
    CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE("the lock file: a link in its place is refused, and nothing is written where it leads") {
  TempDir dir;
  generate(dir / "in");
  const fs::path out = dir / "out";
  fs::create_directories(out);
  const std::string victim(200, 'v');
  write_file(dir / "victim.txt", victim);
  fs::create_symlink("../victim.txt", out / ".shardwise.lock");
  const CommandResult linked = convert(dir / "in", out);
  INFO(linked.err);
  CHECK(linked.exit_code == 5);
  CHECK_THAT(linked.err, Catch::Contains("the lock file " + (out / ".shardwise.lock").string() +
                                         " is a symbolic link: shardwise writes no file through a link"));
  CHECK(read_file(dir / "victim.txt") == victim);

  // A dangling link: nothing is created where it leads.
  fs::remove(out / ".shardwise.lock");
  fs::create_symlink("../created.txt", out / ".shardwise.lock");
  const CommandResult dangling = convert(dir / "in", out);
  CHECK(dangling.exit_code == 5);
  CHECK_FALSE(fs::exists(dir / "created.txt"));
  CHECK(fs::is_symlink(out / ".shardwise.lock"));

  // A temporary's name taken by a link: the stale temporary is removed, not written through.
  fs::remove(out / ".shardwise.lock");
  fs::create_symlink("../victim.txt", out / ".tokenizer.json.partial");
  REQUIRE(convert(dir / "in", out).exit_code == 0);
  CHECK(read_file(dir / "victim.txt") == victim);
  CHECK(read_file(out / "tokenizer.json") == read_file(dir / "in" / "tokenizer.json"));
}

TEST_CASE("convert: a side file that leads outside the input folder is refused by name") {
  TempDir dir;
  const fs::path in = dir / "in";
  generate(in);
  write_file(dir / "private.json", "{\"secret\": 1}");
  fs::permissions(dir / "private.json", fs::perms::owner_read | fs::perms::owner_write);
  fs::remove(in / "tokenizer.json");
  fs::create_symlink("../private.json", in / "tokenizer.json");

  for (const std::string command : {"plan", "convert"}) {
    Args args = {command, "-i", in.string(), "--n-experts", "8", "-m", "2"};
    if (command == "convert") args.insert(args.end(), {"-o", (dir / "out").string()});
    const CommandResult refused = run_shardwise(args);
    INFO(command << ": " << refused.err);
    CHECK(refused.exit_code == 4);
    CHECK_THAT(refused.err,
               Catch::Contains((in / "tokenizer.json").string() + ": leads outside its folder " +
                               in.string() + " (to " + fs::canonical(dir / "private.json").string() +
                               "): shardwise reads nothing outside the folders it is given"));
    CHECK_FALSE(fs::exists(dir / "out"));
  }

  // Allowed by the option: copied, and no more readable than the file it copies.
  fs::permissions(in / "tokenizer_config.json",
                  fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  const CommandResult allowed = convert(in, dir / "out", {"--allow-outside-links"});
  INFO(allowed.err);
  REQUIRE(allowed.exit_code == 0);
  CHECK(read_file(dir / "out" / "tokenizer.json") == "{\"secret\": 1}");
  CHECK(mode_of(dir / "out" / "tokenizer.json") == 0600);
  CHECK((mode_of(dir / "out" / "tokenizer_config.json") & ~0640u) == 0);
  CHECK(run_shardwise({"verify", "-i", in.string(), "-o", (dir / "out").string(), "--n-experts", "8", "-m",
                       "2", "--allow-outside-links"})
            .exit_code == 0);
}

TEST_CASE("plan: a tensor file or index that leads outside the input folder is refused by name") {
  TempDir dir;
  const fs::path in = dir / "in";
  generate(in, {"--files", "2", "--index"});
  fs::create_directories(dir / "elsewhere");
  std::string moved;
  for (const auto& entry : fs::directory_iterator(in)) {
    if (entry.path().extension() == ".safetensors") moved = entry.path().filename().string();
  }
  REQUIRE(!moved.empty());
  fs::rename(in / moved, dir / "elsewhere" / moved);
  fs::create_symlink("../elsewhere/" + moved, in / moved);
  const Args plan = {"plan", "-i", in.string(), "--n-experts", "8", "-m", "2"};
  const CommandResult refused = run_shardwise(plan);
  INFO(refused.err);
  CHECK(refused.exit_code == 4);
  CHECK_THAT(refused.err, Catch::Contains((in / moved).string() + ": leads outside its folder"));
  CHECK(run_shardwise({"inspect", in.string()}).exit_code == 4);
  Args allowed = plan;
  allowed.push_back("--allow-outside-links");
  CHECK(run_shardwise(allowed).exit_code == 0);
  CHECK(run_shardwise({"inspect", in.string(), "--allow-outside-links"}).exit_code == 0);

  // The index itself.
  fs::rename(dir / "elsewhere" / moved, in / moved);
  fs::rename(in / "model.safetensors.index.json", dir / "elsewhere" / "index.json");
  fs::create_symlink("../elsewhere/index.json", in / "model.safetensors.index.json");
  const CommandResult index = run_shardwise(plan);
  CHECK(index.exit_code == 4);
  CHECK_THAT(index.err, Catch::Contains("model.safetensors.index.json: leads outside its folder"));
}

TEST_CASE(
    "convert: a Hugging Face cache snapshot, every file a link to its blobs, converts as the folder does") {
  TempDir dir;
  const fs::path in = dir / "in";
  generate(in, {"--files", "2", "--index"});
  const fs::path repo = dir / "hub" / "models--org--tiny";
  const fs::path snapshot = repo / "snapshots" / "0123456789abcdef";
  fs::create_directories(snapshot);
  fs::create_directories(repo / "blobs");
  int blob = 0;
  for (const auto& entry : fs::directory_iterator(in)) {
    const std::string hash = "blob" + std::to_string(blob++);
    fs::copy_file(entry.path(), repo / "blobs" / hash);
    fs::create_symlink("../../blobs/" + hash, snapshot / entry.path().filename());
  }
  REQUIRE(convert(in, dir / "plain").exit_code == 0);
  const CommandResult cached = convert(snapshot, dir / "cached");
  INFO(cached.err);
  REQUIRE(cached.exit_code == 0);
  std::map<std::string, std::string> plain = folder_files(dir / "plain");
  std::map<std::string, std::string> got = folder_files(dir / "cached");
  plain.erase("shardwise-manifest.json");  // records the input's file identities
  got.erase("shardwise-manifest.json");
  CHECK(got == plain);
  CHECK(run_shardwise({"verify", "-i", snapshot.string(), "-o", (dir / "cached").string(), "--n-experts", "8",
                       "-m", "2"})
            .exit_code == 0);
}

TEST_CASE("reshard: a side file or rank file of the old folder that leads outside it is refused by name") {
  TempDir dir;
  generate(dir / "in");
  const fs::path from = dir / "mp2";
  REQUIRE(convert(dir / "in", from).exit_code == 0);
  fs::rename(from / "tokenizer.json", dir / "tokenizer.json");
  fs::create_symlink("../tokenizer.json", from / "tokenizer.json");
  const Args reshard = {"reshard", "--from", from.string(), "-o", (dir / "out").string(), "-m", "4", "-q"};
  const CommandResult side = run_shardwise(reshard);
  INFO(side.err);
  CHECK(side.exit_code == 4);
  CHECK_THAT(side.err, Catch::Contains((from / "tokenizer.json").string() + ": leads outside its folder"));
  CHECK_FALSE(fs::exists(dir / "out"));
  Args allowed = reshard;
  allowed.push_back("--allow-outside-links");
  CHECK(run_shardwise(allowed).exit_code == 0);

  fs::remove_all(dir / "out");
  fs::remove(from / "tokenizer.json");
  fs::rename(dir / "tokenizer.json", from / "tokenizer.json");
  fs::rename(from / "model1-mp2.safetensors", dir / "model1-mp2.safetensors");
  fs::create_symlink("../model1-mp2.safetensors", from / "model1-mp2.safetensors");
  const CommandResult rank = run_shardwise(reshard);
  CHECK(rank.exit_code == 4);
  CHECK_THAT(rank.err,
             Catch::Contains((from / "model1-mp2.safetensors").string() + ": leads outside its folder"));
}

TEST_CASE("rules: a FIFO, a byte that is not UTF-8, an alias bomb: exit 3 before anything is created") {
  TempDir dir;
  generate(dir / "in");
  const fs::path out = dir / "out";
  const auto convert_with = [&](const fs::path& rules) {
    return convert(dir / "in", out, {"--rules", rules.string()});
  };

  const fs::path fifo = dir / "fifo.yaml";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const Args& args : {Args{"rules", "check", fifo.string()},
                           Args{"plan", "-i", (dir / "in").string(), "--rules", fifo.string(), "-m", "2"}}) {
    const CommandResult r = run_shardwise(args);
    INFO(r.err);
    CHECK(r.exit_code == 3);
    CHECK_THAT(r.err, Catch::Contains(fifo.string() + ": a FIFO (named pipe), not a regular file"));
  }
  write_file(dir / "child.yaml", "shardwise: 1\nextends: fifo.yaml\n");
  CHECK(run_shardwise({"rules", "check", (dir / "child.yaml").string()}).exit_code == 3);

  // The bundled rules with a Latin-1 byte in a comment: refused at load, where it is.
  const std::string bundled =
      read_file(fs::path(shardwise::test::source_dir()) / "rules" / "deepseek-v4-w4a16.yaml");
  const auto lines = std::count(bundled.begin(), bundled.end(), '\n');
  write_file(dir / "latin1.yaml", bundled + "# caf\xe9\n");
  const std::string where =
      (dir / "latin1.yaml").string() + ":" + std::to_string(lines + 1) + ":6: byte 0xe9 is not UTF-8";
  const CommandResult check = run_shardwise({"rules", "check", (dir / "latin1.yaml").string()});
  CHECK(check.exit_code == 3);
  CHECK_THAT(check.err, Catch::Contains(where));
  const CommandResult latin1 = convert_with(dir / "latin1.yaml");
  CHECK(latin1.exit_code == 3);
  CHECK_THAT(latin1.err, Catch::Contains(where));
  CHECK_FALSE(fs::exists(out));

  // Ten aliases of ten aliases, nine levels: 10^9 nodes from a kilobyte.
  std::string bomb = bundled + "tests:\n  - {name: a0, expect: &a0 [x, x, x, x, x, x, x, x, x, x]}\n";
  for (int level = 1; level <= 9; ++level) {
    bomb += "  - {name: a" + std::to_string(level) + ", expect: &a" + std::to_string(level) + " [";
    for (int i = 0; i < 10; ++i) bomb += (i ? ", *a" : "*a") + std::to_string(level - 1);
    bomb += "]}\n";
  }
  write_file(dir / "bomb.yaml", bomb);
  const CommandResult bombed = run_shardwise({"rules", "check", (dir / "bomb.yaml").string()});
  CHECK(bombed.exit_code == 3);
  CHECK_THAT(bombed.err, Catch::Contains("the YAML expands to more than 200000 nodes once its aliases"));
  CHECK(convert_with(dir / "bomb.yaml").exit_code == 3);
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("inputs that are FIFOs are refused without blocking") {
  TempDir dir;
  const fs::path in = dir / "in";
  generate(in, {"--files", "2", "--index"});
  fs::remove(in / "model.safetensors.index.json");
  REQUIRE(::mkfifo((in / "model.safetensors.index.json").c_str(), 0600) == 0);
  const CommandResult index = run_shardwise({"plan", "-i", in.string(), "--n-experts", "8", "-m", "2"});
  CHECK(index.exit_code == 4);
  CHECK_THAT(index.err,
             Catch::Contains("model.safetensors.index.json: a FIFO (named pipe), not a regular file"));
}

}  // namespace
