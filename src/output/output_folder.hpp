#pragma once
// Making sure an output folder is safe to write into, before anything is written. Internal.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <shardwise/output/run_options.hpp>
#include <shardwise/plan/plan.hpp>

#include "output/folder_lock.hpp"

namespace shardwise::output {

// What a run is about to write into the output folder.
struct FolderClaim {
  std::vector<std::string> files;  // outputs, side files and the manifest this run may write
  // Further names whose temporaries (st::temp_path_for) are this run's own: its fragment, its
  // manifest temporary.
  std::vector<std::string> own_temporaries;
  // A whole run owns every temporary shardwise names in the folder; a partial run only its own,
  // since other processes may be writing theirs at this very moment.
  bool whole = true;
  std::vector<std::uint64_t> ranks;  // a partial run's ranks (side files go with rank 0)
};

// The folder a run writes into, locked for it (FolderLock) until this is destroyed.
struct PreparedFolder {
  std::string path;  // canonical
  std::unique_ptr<FolderLock> lock;
};

// Refuses (Error(io)) an output folder that is the input folder or inside it, or that holds files
// the run would overwrite which no shardwise manifest or fragment there lists (unless `overwrite`
// is force). Then creates the folder, locks what the claim writes (refusing at once, before
// anything is touched, when another run holds any of it), and removes the temporaries of the
// claimed names (and, for a whole run, every shardwise temporary) that a killed run left behind:
// under the lock they cannot be another live run's.
PreparedFolder prepare_output_folder(const plan::Plan& plan, const std::string& output_dir,
                                     Overwrite overwrite, const FolderClaim& claim);

}  // namespace shardwise::output
