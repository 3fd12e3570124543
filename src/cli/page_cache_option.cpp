#include "cli/page_cache_option.hpp"

#include <string>

namespace shardwise::cli {

void add_page_cache_option(CLI::App& command, convert::PageCache& value, const char* help) {
  command
      .add_option_function<std::string>(
          "--page-cache",
          [&value](const std::string& name) {
            value = name == "keep"   ? convert::PageCache::keep
                    : name == "drop" ? convert::PageCache::drop
                                     : convert::PageCache::automatic;
          },
          help)
      ->check(CLI::IsMember({"auto", "keep", "drop"}));
}

}  // namespace shardwise::cli
