// `shardwise rules`: not implemented yet (owned by the issue that builds it).
#include "cli/commands.hpp"

namespace shardwise::cli {

void add_rules_command(CLI::App& /*app*/, Action& /*action*/) {}

}  // namespace shardwise::cli
