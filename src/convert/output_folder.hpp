#pragma once
// Making sure an output folder is safe to write into, before anything is written. Internal.

#include <string>

#include <shardwise/convert/converter.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

// Refuses (Error(io)) an output folder that is the input folder or inside it, or that holds files
// the plan would overwrite which no shardwise manifest there lists (unless `overwrite` is force).
// Then creates the folder and removes temporaries a killed run left behind. Returns the folder's
// canonical path.
std::string prepare_output_folder(const plan::Plan& plan, const std::string& output_dir, Overwrite overwrite);

}  // namespace shardwise::convert
