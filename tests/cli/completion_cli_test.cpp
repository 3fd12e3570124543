// `shardwise --version`, `shardwise completion bash|zsh` and `shardwise man-page` through the real
// binary: the version names the kernels this CPU runs; bash completion, run in bash, offers the
// commands, options and choices of the CLI; the man page holds every command's help and is roff
// that groff reads without a warning.
#include <catch2/catch.hpp>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <shardwise/transform/isa.hpp>
#include "support/support.hpp"

using namespace shardwise::test;

namespace {

// The words bash completion offers for `line` (words separated by spaces; a trailing space starts
// an empty word), from the script `shardwise completion bash` prints.
std::string completed(const std::string& line) {
  TempDir dir;
  const auto script = run_command({shardwise_binary(), "completion", "bash"});
  REQUIRE(script.exit_code == 0);
  write_file(dir / "completion.bash", script.out);
  std::string words = "(";
  std::istringstream in(line);
  std::string word;
  int count = 0;
  while (in >> word) {
    words += "'" + word + "' ";
    ++count;
  }
  if (line.back() == ' ') {
    words += "''";
    ++count;
  }
  words += ")";
  const std::string command = "source '" + (dir / "completion.bash").string() + "'; COMP_WORDS=" + words +
                              "; COMP_CWORD=" + std::to_string(count - 1) +
                              "; _shardwise 2>/dev/null; echo \"${COMPREPLY[*]}\"";
  const auto r = run_command({"/bin/bash", "--norc", "-c", command});
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, r.out.find('\n'));
}

// The commands `shardwise --help` lists, under "Subcommands:".
std::vector<std::string> listed_commands() {
  const auto help = run_command({shardwise_binary(), "--help"});
  std::istringstream in(help.out.substr(help.out.find("Subcommands:")));
  std::vector<std::string> commands;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line) && line.rfind("  ", 0) == 0) {
    if (line.size() < 3 || line[2] == ' ') continue;  // a description's continuation
    std::istringstream words(line);
    std::string name;
    words >> name;
    commands.push_back(name);
  }
  return commands;
}

}  // namespace

TEST_CASE("shardwise --version names the version, the commit, the build and the kernels this CPU runs") {
  const auto r = run_command({shardwise_binary(), "--version"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.rfind("shardwise 0.", 0) == 0);
  CHECK(r.out.find("\ncommit: ") != std::string::npos);
  CHECK(r.out.find("\nbuild: ") != std::string::npos);
  const bool avx2 = shardwise::transform::isa_available(shardwise::transform::Isa::avx2);
  CHECK(r.out.find(avx2 ? "\nkernels: AVX2" : "\nkernels: portable") != std::string::npos);
}

TEST_CASE("bash completion offers every command, then a command's options and their choices") {
  const auto commands = listed_commands();
  REQUIRE(commands.size() >= 8);
  std::string all;
  for (const auto& c : commands) all += (all.empty() ? "" : " ") + c;
  CHECK(completed("shardwise ") == all);
  CHECK(completed("shardwise conv") == "convert");
  CHECK(completed("shardwise rules ch") == "check");
  CHECK(completed("shardwise convert --page-") == "--page-cache");
  CHECK(completed("shardwise convert --page-cache ") == "auto keep drop");
  CHECK(completed("shardwise --hf-ckpt") == "");  // an option of the commands, not of shardwise itself
  CHECK(completed("shardwise plan --format j") == "json");
  CHECK(completed("shardwise completion ") == "bash zsh");
  CHECK(completed("shardwise rules list --h") == "--help");
  CHECK(completed("shardwise convert -i in ").find("--save-path") !=
        std::string::npos);  // no positionals: options
  // --rules takes bundled names (and files, which compgen adds from the working directory).
  const std::string rules = " " + completed("shardwise plan -r deepseek-v3") + " ";
  CHECK(rules.find(" deepseek-v3 ") != std::string::npos);
  CHECK(rules.find(" deepseek-v3.2 ") != std::string::npos);
  CHECK(rules.find(" deepseek-v4 ") == std::string::npos);
}

TEST_CASE("zsh completion is one function over the same commands") {
  const auto r = run_command({shardwise_binary(), "completion", "zsh"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.rfind("#compdef shardwise\n", 0) == 0);
  for (const auto& c : listed_commands()) CHECK(r.out.find("(shardwise/" + c + ")") != std::string::npos);
  CHECK(r.out.find("choices=( 'auto' 'keep' 'drop')") != std::string::npos);
  CHECK(run_command({shardwise_binary(), "completion", "fish"}).exit_code == 2);
}

TEST_CASE("the man page holds every command's help, as roff that groff reads without a warning") {
  const auto page = run_command({shardwise_binary(), "man-page"});
  REQUIRE(page.exit_code == 0);
  CHECK(page.out.rfind(".TH SHARDWISE 1 ", 0) == 0);
  for (const auto& c : listed_commands())
    CHECK(page.out.find(".SS shardwise " + c + "\n") != std::string::npos);
  CHECK(page.out.find(".SS shardwise rules scaffold\n") != std::string::npos);
  CHECK(page.out.find("\\-\\-page\\-cache") != std::string::npos);
  for (const auto& c : listed_commands()) CHECK(c != "man-page");  // hidden from --help
  const std::string groff = "/usr/bin/groff";
  if (!std::filesystem::exists(groff)) return;  // groff-base comes with man-db
  TempDir dir;
  write_file(dir / "shardwise.1", page.out);
  const auto r = run_command({groff, "-k", "-man", "-Tutf8", "-ww", "-z", (dir / "shardwise.1").string()});
  CHECK(r.err == "");
  CHECK(r.exit_code == 0);
}
