#include "support/cli.hpp"

#include <system_error>

namespace shardwise::test {

CommandResult run_shardwise(std::vector<std::string> args) {
  args.insert(args.begin(), shardwise_binary());
  return run_command(args);
}

CommandResult run_tool(const std::string& tool, std::vector<std::string> args) {
  args.insert(args.begin(), tools_dir() + "/" + tool);
  return run_command(args);
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
