#include "cli/page_cache_option.hpp"

#include <string>

namespace shardwise::cli {

void add_page_cache_option(CLI::App& command, output::PageCache& value, const char* help) {
  command
      .add_option_function<std::string>(
          "--page-cache",
          [&value](const std::string& name) {
            value = name == "keep"   ? output::PageCache::keep
                    : name == "drop" ? output::PageCache::drop
                                     : output::PageCache::automatic;
          },
          help)
      ->check(CLI::IsMember({"auto", "keep", "drop"}));
}

}  // namespace shardwise::cli
