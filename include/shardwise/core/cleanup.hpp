#pragma once
// Temporary files that must not outlive an interrupted run. A SIGINT/SIGTERM handler unlinks every
// registered path (async-signal-safely) and re-raises the signal; normal paths unregister on
// commit or destruction.

#include <string>

namespace shardwise {

// Installs the SIGINT/SIGTERM handlers once; later calls do nothing. A signal the process inherited
// as ignored (SIG_IGN: `nohup`, background jobs of a script) is left ignored. The handler ends the
// process by the signal itself, which shells report as 130 (SIGINT) or 143 (SIGTERM).
void install_cleanup_handlers();
void register_temp_file(const std::string& path);
void unregister_temp_file(const std::string& path);
// True once SIGINT or SIGTERM arrived (long loops poll it to stop early).
bool interrupted() noexcept;

}  // namespace shardwise
