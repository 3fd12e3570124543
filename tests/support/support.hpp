#pragma once
// Shared test helpers: temporary folders, small files, running the real binary.

#include <filesystem>
#include <string>
#include <vector>

namespace shardwise::test {

// A fresh folder under the system temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, const std::string& bytes);
std::string read_file(const std::filesystem::path& path);

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal, when killed by one
  std::string out;
  std::string err;
};
// Runs `argv` (no shell) with stdin from /dev/null, capturing stdout and stderr.
CommandResult run_command(const std::vector<std::string>& argv);
// Starts `argv` (no shell) with stdin, stdout and stderr on /dev/null, without waiting for it:
// for tests that signal a running conversion. Returns the child's pid.
int spawn_command(const std::vector<std::string>& argv);
// The built `shardwise` binary, and the generators' folder (build/tools).
std::string shardwise_binary();
std::string tools_dir();
std::string source_dir();

}  // namespace shardwise::test
