#pragma once
// Helpers for the tests that run the real binary and the generators and look at the folders they
// write (tests/cli). Apart from support.hpp so that only those tests depend on them.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "support/support.hpp"

namespace shardwise::test {

// run_command of the built `shardwise` with `args` (`{"convert", "-i", in, ...}`).
CommandResult run_shardwise(std::vector<std::string> args);
// run_command of a generator in build/tools (`gen_checkpoint`, `gen_official_checkpoint`).
CommandResult run_tool(const std::string& tool, std::vector<std::string> args);

// Every file directly in `dir`, name -> bytes, to compare two output folders whole. Throws when
// `dir` does not exist.
std::map<std::string, std::string> folder_files(const std::filesystem::path& dir);
// Whether `dir` holds an output file's temporary (`.NAME.partial`). False when `dir` does not
// exist; entries that vanish while it looks (a run finishing) are no error.
bool has_temporary(const std::filesystem::path& dir);

}  // namespace shardwise::test
