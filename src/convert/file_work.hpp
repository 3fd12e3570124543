#pragma once
// Cutting output files into the pieces that the copy engine's threads copy with one staging
// buffer each. Internal to convert.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <shardwise/output/file_work.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

// Lays out the output files of `plan` with the given ranks (ascending), and cuts their tensors into
// pieces of at most `piece_bytes`. Of each layout only the sizes are kept (data_start, file_size):
// the header's text is made again when the file is opened (output::layout_of).
std::vector<output::FileWork> build_file_work(const plan::Plan& plan, const std::string& output_dir,
                                              std::uint64_t piece_bytes,
                                              std::span<const std::uint64_t> ranks);

}  // namespace shardwise::convert
