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

using Args = std::vector<std::string>;
// `first` followed by `then`: a test's usual arguments and one case's extra ones.
Args joined(Args first, const Args& then);

// A tiny DeepSeek-V4-shaped checkpoint in `out`: gen_checkpoint `--config tiny`, then `extra`
// (`{"--layers", "2", "--experts", "8"}`). The calling test stops (REQUIRE) when the generator
// fails, with its stderr shown.
void generate_checkpoint(const std::filesystem::path& out, const Args& extra = {});
// A checkpoint in one of DeepSeek's official formats in `out`: gen_official_checkpoint with `args`
// (`{"--format", "v4", ...}`); the calling test stops when the generator fails.
void generate_official_checkpoint(const std::filesystem::path& out, const Args& args);

// The argv of `shardwise convert -i IN -o OUT --n-experts EXPERTS -m MP -q`, then `extra`, for
// run_command (the bundled rules).
Args convert_args(const std::filesystem::path& in, const std::filesystem::path& out, const Args& extra = {},
                  const std::string& mp = "4", const std::string& experts = "8");

// Whether `folder` exists and holds a rank file (a `.safetensors` file): a refused run left none.
bool holds_rank_file(const std::filesystem::path& folder);

// Every file directly in `dir`, name -> bytes, to compare two output folders whole. Throws when
// `dir` does not exist.
std::map<std::string, std::string> folder_files(const std::filesystem::path& dir);
// Whether `dir` holds an output file's temporary (`.NAME.partial`). False when `dir` does not
// exist; entries that vanish while it looks (a run finishing) are no error.
bool has_temporary(const std::filesystem::path& dir);

}  // namespace shardwise::test
