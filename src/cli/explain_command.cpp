// `shardwise explain`: not implemented yet (owned by the issue that builds it).
#include "cli/commands.hpp"

namespace shardwise::cli {

void add_explain_command(CLI::App& /*app*/, Action& /*action*/) {}

}  // namespace shardwise::cli
