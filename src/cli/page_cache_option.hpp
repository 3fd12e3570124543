#pragma once
// The --page-cache option that convert and verify share.

#include <CLI/CLI.hpp>

#include <shardwise/convert/page_cache.hpp>

namespace shardwise::cli {

// Adds `--page-cache auto|keep|drop` with the given help text.
void add_page_cache_option(CLI::App& command, convert::PageCache& value, const char* help);

}  // namespace shardwise::cli
