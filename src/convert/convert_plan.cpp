#include <shardwise/convert/converter.hpp>

#include <algorithm>
#include <span>
#include <vector>

#include <shardwise/convert/tensor_stream.hpp>
#include <shardwise/output/output_run.hpp>

#include <shardwise/core/parallel.hpp>
#include "convert/copy_engine.hpp"
#include "convert/file_work.hpp"

namespace shardwise::convert {

namespace {

// All staging buffers together stay within this, whatever the thread count: with the page cache
// not counted, they are most of the process's memory.
constexpr std::size_t kStagingBudget = 128u << 20;
constexpr std::size_t kMaxPieceBytes = 8u << 20;
constexpr std::size_t kMinPieceBytes = 256u << 10;

std::size_t piece_bytes_for(std::size_t requested, unsigned threads) {
  if (requested != 0) return std::max<std::size_t>(requested, kMinScratchBytes);
  // Each thread holds a piece and a scratch buffer of the same size.
  const std::size_t fair = kStagingBudget / (2 * static_cast<std::size_t>(threads));
  return std::clamp(fair / (64u << 10) * (64u << 10), kMinPieceBytes, kMaxPieceBytes);
}

}  // namespace

ConvertSummary convert_plan(const plan::Plan& plan, const ConvertOptions& options) {
  // The run uses as many threads (output::run_outputs).
  const std::size_t piece_bytes = piece_bytes_for(options.piece_bytes, thread_count(options.run.threads));
  output::OutputWriter writer;
  writer.planned = [&](const output::InputWatch& inputs) {
    output::Manifest planned =
        output::provisional_manifest(plan, options.rules, output::input_headers_xxh3(plan));
    planned.inputs = inputs.record();
    return planned;
  };
  writer.layout = [&](std::span<const std::uint64_t> ranks, const std::string& out_dir) {
    return build_file_work(plan, out_dir, piece_bytes, ranks);
  };
  writer.write = [&](std::vector<output::FileWork>& files, unsigned threads, output::PageCache cache,
                     output::Progress& progress, const output::CommitHook& on_commit,
                     const output::PreCommitCheck& before_commit) {
    copy_files(plan, files, threads, piece_bytes, cache, progress, on_commit, before_commit);
  };
  return output::run_outputs(plan, options.run, writer);
}

}  // namespace shardwise::convert
