#pragma once
// The --page-cache option that convert and verify share.

#include <CLI/CLI.hpp>

#include <shardwise/output/page_cache.hpp>

namespace shardwise::cli {

// Adds `--page-cache auto|keep|drop` with the given help text.
void add_page_cache_option(CLI::App& command, output::PageCache& value, const char* help);

}  // namespace shardwise::cli
