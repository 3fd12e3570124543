#pragma once
// The work of one output file: where it goes and its layout, which the output run reads, and for
// convert the pieces a thread copies with one staging buffer (convert/file_work.hpp cuts them;
// reshard leaves them empty).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <shardwise/plan/plan.hpp>
#include <shardwise/safetensors/writer.hpp>

namespace shardwise::output {

// Its TensorStream is not kept: with 100,000s of tensors, the streams of block-scaled transforms
// would be most of a run's memory. It is made again from the plan where a piece is copied (cheap:
// arithmetic on the plan's numbers), after build_file_work made it once to check it and cut the
// pieces.
struct TensorWork {
  std::size_t planned = 0;   // index into plan::OutputFile::tensors
  std::size_t input = 0;     // index into Plan::input_files
  std::uint64_t offset = 0;  // absolute offset of its first byte in the output file
};

// Output bytes [begin, end) of one tensor. Pieces of a file are in data order, so hashing them in
// order hashes the file.
struct Piece {
  std::size_t tensor = 0;  // index into FileWork::tensors
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  bool first = false;  // the tensor's first piece
  bool last = false;   // the tensor's last piece
};

struct FileWork {
  const plan::OutputFile* planned = nullptr;
  std::string final_path;
  st::FileLayout layout;
  std::string prefix;               // the file's first 8 bytes, the header's length (then layout.header)
  std::vector<TensorWork> tensors;  // in data order
  std::vector<Piece> pieces;        // in data order
};

// The layout of the planned file (st::layout_file of its tensors and metadata).
st::FileLayout layout_of(const plan::OutputFile& output);

// One output file laid out in `output_dir`: planned, final path, layout and prefix (no tensors or
// pieces yet).
FileWork lay_out_file(const plan::OutputFile& output, const std::string& output_dir);

}  // namespace shardwise::output
