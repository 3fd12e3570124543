#include "support/cli.hpp"

#include <system_error>

#include <catch2/catch.hpp>

namespace shardwise::test {

CommandResult run_shardwise(std::vector<std::string> args) {
  args.insert(args.begin(), shardwise_binary());
  return run_command(args);
}

CommandResult run_tool(const std::string& tool, std::vector<std::string> args) {
  args.insert(args.begin(), tools_dir() + "/" + tool);
  return run_command(args);
}

Args joined(Args first, const Args& then) {
  first.insert(first.end(), then.begin(), then.end());
  return first;
}

void generate_checkpoint(const std::filesystem::path& out, const Args& extra) {
  Args args = {"--out", out.string(), "--config", "tiny"};
  args.insert(args.end(), extra.begin(), extra.end());
  const CommandResult generated = run_tool("gen_checkpoint", args);
  INFO(generated.err);
  REQUIRE(generated.exit_code == 0);
}

void generate_official_checkpoint(const std::filesystem::path& out, const Args& args) {
  Args all = {"--out", out.string()};
  all.insert(all.end(), args.begin(), args.end());
  const CommandResult generated = run_tool("gen_official_checkpoint", all);
  INFO(generated.err);
  REQUIRE(generated.exit_code == 0);
}

Args convert_args(const std::filesystem::path& in, const std::filesystem::path& out, const Args& extra,
                  const std::string& mp, const std::string& experts) {
  Args args = {shardwise_binary(), "convert", "-i", in.string(), "-o", out.string(),
               "--n-experts",      experts,   "-m", mp,          "-q"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

bool holds_rank_file(const std::filesystem::path& folder) {
  if (!std::filesystem::exists(folder)) return false;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().extension() == ".safetensors") return true;
  }
  return false;
}

std::map<std::string, std::string> folder_files(const std::filesystem::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    files[entry.path().filename().string()] = read_file(entry.path());
  }
  return files;
}

bool has_temporary(const std::filesystem::path& dir) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().find(".partial") != std::string::npos) return true;
  }
  return false;
}

}  // namespace shardwise::test
