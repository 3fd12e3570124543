#pragma once
// What an output folder holds, and the checks on it that do not read data. Internal to verify.

#include <set>
#include <string>
#include <vector>

#include "verify/findings.hpp"

namespace shardwise::verify {

// The names of the entries in `folder` (not recursive). A folder that does not exist holds
// nothing; a path that exists but is not a folder is an Error(io).
std::set<std::string> list_folder(const std::string& folder);

// Reports each temporary that a conversion writing `names` leaves behind when interrupted.
void report_leftover_temporaries(const std::set<std::string>& present, const std::vector<std::string>& names,
                                 Findings& findings);

// The message of an Error about `path`, without the path when it starts with it (the finding
// names the file already).
std::string message_without_path(const std::string& message, const std::string& path);

}  // namespace shardwise::verify
