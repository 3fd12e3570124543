#include "convert/file_work.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <shardwise/convert/composite_stream.hpp>
#include <shardwise/convert/tensor_stream.hpp>
#include <shardwise/core/error.hpp>

namespace shardwise::convert {

namespace {

output::FileWork build_one(const plan::Plan& plan, const plan::OutputFile& output,
                           const std::string& output_dir, std::uint64_t piece_bytes) {
  output::FileWork work = output::lay_out_file(output, output_dir);
  work.tensors.reserve(output.tensors.size());  // 100,000s of tensors: no doubling
  work.pieces.reserve(output.tensors.size());   // most tensors are one piece
  for (const std::size_t index : work.layout.order) {
    const plan::PlannedTensor& t = output.tensors[index];
    if (t.source >= plan.sources.size() || plan.sources[t.source].file >= plan.input_files.size()) {
      throw Error(ErrorKind::input,
                  fmt::format("{}: {} refers to a source the plan does not have", output.file, t.name));
    }
    const plan::Source& source = plan.sources[t.source];
    if (work.layout.bytes[index] != t.bytes) {
      throw Error(ErrorKind::input, fmt::format("{}: {} is laid out as {} bytes but planned as {}",
                                                output.file, t.name, work.layout.bytes[index], t.bytes));
    }
    // Both check the slices and transforms against the sources; a fused output's pieces are its
    // parts' (never spanning two along dim 0).
    const std::vector<std::uint64_t> bounds = t.composite == plan::kNoComposite
                                                  ? TensorStream(plan, t).piece_bounds(piece_bytes)
                                                  : CompositeStream(plan, t).piece_bounds(piece_bytes);
    const std::size_t i = work.tensors.size();
    work.tensors.push_back({index, source.file, work.layout.offset[index]});
    for (std::size_t b = 0; b + 1 < bounds.size(); ++b) {
      work.pieces.push_back({i, bounds[b], bounds[b + 1], b == 0, b + 2 == bounds.size()});
    }
  }
  work.pieces.shrink_to_fit();
  // Needed no more, or (the header's text) only when the file is opened, which lays it out again:
  // kept for every file from the start, they were MBs per file at 100,000s of tensors.
  std::string().swap(work.layout.header);
  std::vector<std::size_t>().swap(work.layout.order);
  std::vector<std::uint64_t>().swap(work.layout.offset);
  std::vector<std::uint64_t>().swap(work.layout.bytes);
  return work;
}

}  // namespace

std::vector<output::FileWork> build_file_work(const plan::Plan& plan, const std::string& output_dir,
                                              std::uint64_t piece_bytes,
                                              std::span<const std::uint64_t> ranks) {
  std::vector<output::FileWork> work;
  work.reserve(ranks.size());
  for (const plan::OutputFile& output : plan.outputs) {
    if (std::binary_search(ranks.begin(), ranks.end(), output.rank)) {
      work.push_back(build_one(plan, output, output_dir, piece_bytes));
    }
  }
  return work;
}

}  // namespace shardwise::convert
