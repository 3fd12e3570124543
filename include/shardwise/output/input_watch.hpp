#pragma once
// The input files of a run must not change under it: what each looked like when it was planned
// (size, mtime, ctime, inode: core/file_identity) is checked again before each output file is put
// under its final name and before the manifest is completed. A change fails the run.

#include <string>
#include <vector>

#include <shardwise/core/file_identity.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::output {

class InputWatch {
 public:
  // The plan's tensor files and side files with the identities the planner recorded; a plan made
  // without them (by hand) gets them now. Throws Error(io) when an input cannot be examined.
  explicit InputWatch(const plan::Plan& plan);

  // Throws Error(input) naming every input file that changed since it was planned (removed,
  // replaced, resized, modified), and what changed. Thread-safe.
  void check() const;

  // The manifest's record of the inputs, in plan order (tensor files, then side files).
  std::vector<ManifestInput> record() const;

 private:
  struct Watched {
    std::string path;  // as opened
    std::string name;  // within the input folder
    FileIdentity identity;
  };
  std::vector<Watched> files_;
};

}  // namespace shardwise::output
