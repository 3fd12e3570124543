#pragma once
// The old pieces a run reads, compared with the checksums the old manifest records for them. A
// piece the gathering reads whole and in order (every split piece when mp N is merged into M < N,
// every owned piece, the replicated copy read) is hashed as it is gathered, so the old folder is
// read once; any other (a split piece cut for several new tensors, M > N) is hashed before anything
// is written; the replicated copies not read (LogicalTensor::copies) while the files are written.
// Internal to reshard.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/output/checksum.hpp>
#include <shardwise/output/file_work.hpp>
#include <shardwise/reshard/reshard.hpp>

#include <shardwise/core/io.hpp>
#include "reshard/gather.hpp"

namespace shardwise::reshard {

// A piece whose bytes differ from its recorded checksum.
struct Damage {
  std::size_t file = 0;  // index into ReshardPlan::old_files
  std::uint64_t offset = 0;
  std::string message;  // names the file, the tensor and both checksums
};

// How a piece whose bytes differ from their recorded checksum is named, wherever it is found (in
// planning, for replicated copies compared then, or in writing).
std::string damage_message(const std::string& path, std::string_view tensor, bool replicated,
                           std::uint64_t actual, std::uint64_t recorded);

// Hashes, on `threads` threads, every piece with a recorded checksum that the new tensors of
// `files` read but do not read whole. When one is damaged, also the pieces they read whole and the
// replicated copies not read, so that the error names every damaged piece; throws then
// (refuse_damage) before anything is written.
void check_pieces_up_front(const ReshardPlan& plan, const std::vector<output::FileWork>& files,
                           const std::vector<io::ReadOnlyFile>& inputs, unsigned threads);

// Hashes the replicated copies no new file reads (LogicalTensor::copies) on `threads` threads, in
// file order; returns those whose bytes differ from their checksums. With `drop`, each copy leaves
// the page cache once hashed. Gives up (returning what it found) once `stop` is set.
std::vector<Damage> hash_copies(const ReshardPlan& plan, const std::vector<io::ReadOnlyFile>& inputs,
                                unsigned threads, bool drop = false, const std::atomic<bool>* stop = nullptr);

// The pieces one new tensor reads whole, hashed as they are gathered.
class PieceHashes {
 public:
  PieceHashes(const ReshardPlan& plan, const NewTensor& tensor);
  // What gather() hands the whole pieces' bytes to; empty when no piece has a recorded checksum.
  PieceBytes hook();
  // Once the tensor is gathered: appends each whole piece whose bytes differ from its checksum.
  void check(std::vector<Damage>& damaged) const;

 private:
  const ReshardPlan& plan_;
  const LogicalTensor& logical_;
  std::vector<std::optional<output::Hasher>> hashers_;  // per piece of the logical tensor
};

// Throws Error(input) naming every damaged piece, in file order, unless `damaged` is empty;
// `outcome` says what the run wrote nevertheless (e.g. "nothing was written").
void refuse_damage(const ReshardPlan& plan, std::vector<Damage> damaged, std::string_view outcome);

}  // namespace shardwise::reshard
