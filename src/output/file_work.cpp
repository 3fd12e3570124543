#include <shardwise/output/file_work.hpp>

#include <filesystem>

namespace shardwise::output {

namespace {

std::string length_prefix(const st::FileLayout& layout) {
  std::string prefix(8, '\0');
  const auto n = static_cast<std::uint64_t>(layout.header.size());
  for (std::size_t i = 0; i < 8; ++i) prefix[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return prefix;
}

}  // namespace

// The names and shapes by reference: a copy of each was MBs of small blocks per file, which
// outlived the layout as holes in the heap.
st::FileLayout layout_of(const plan::OutputFile& output) {
  std::vector<st::OutputTensorRef> layout_input;
  layout_input.reserve(output.tensors.size());
  for (const plan::PlannedTensor& t : output.tensors)
    layout_input.push_back({t.name.view(), t.dtype, {t.shape.data(), t.shape.size()}});
  return st::layout_file_refs(layout_input, output.metadata);
}

FileWork lay_out_file(const plan::OutputFile& output, const std::string& output_dir) {
  FileWork work;
  work.planned = &output;
  work.final_path = (std::filesystem::path(output_dir) / output.file).string();
  work.layout = layout_of(output);
  work.prefix = length_prefix(work.layout);
  return work;
}

}  // namespace shardwise::output
