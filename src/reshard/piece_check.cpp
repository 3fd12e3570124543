#include "reshard/piece_check.hpp"

#include <algorithm>
#include <iterator>
#include <set>
#include <utility>

#include <fmt/format.h>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>

#include <shardwise/core/parallel.hpp>

namespace shardwise::reshard {

namespace {

Damage damage(const ReshardPlan& plan, const LogicalTensor& tensor, const Piece& piece,
              std::uint64_t actual) {
  return {piece.file, piece.offset,
          damage_message(plan.old_files[piece.file].path, tensor.name,
                         tensor.placement.kind == plan::Placement::Kind::replicated, actual, *piece.xxh3)};
}

// A piece to hash and the logical tensor it belongs to.
using PieceOf = std::pair<const LogicalTensor*, const Piece*>;

// File order: a cold page cache is filled by sequential reads. Each piece has an offset of its own
// in its file, so this orders pieces as distinct as they are.
struct InFileOrder {
  bool operator()(const PieceOf& a, const PieceOf& b) const {
    return std::pair(a.second->file, a.second->offset) < std::pair(b.second->file, b.second->offset);
  }
};

// Hashes `todo` on `threads` threads, in file order, until `stop`.
std::vector<Damage> hash_pieces(const ReshardPlan& plan, std::vector<PieceOf> todo,
                                const std::vector<io::ReadOnlyFile>& inputs, unsigned threads,
                                bool drop = false, const std::atomic<bool>* stop = nullptr) {
  std::sort(todo.begin(), todo.end(), InFileOrder());
  std::vector<std::optional<Damage>> found(todo.size());
  std::vector<std::vector<std::byte>> buffers(std::max(1u, threads), std::vector<std::byte>(1u << 20));
  run_parallel(todo.size(), threads, [&](std::size_t i, unsigned worker) {
    if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
    if (stop != nullptr && *stop) return;
    const Piece& p = *todo[i].second;
    const io::ReadOnlyFile& in = inputs[p.file];
    const std::uint64_t actual =
        output::hash_file_range(in.fd(), in.path(), p.offset, p.bytes, buffers[worker]);
    if (drop) io::drop_cached(in.fd(), p.offset, p.bytes);
    if (actual != *p.xxh3) found[i] = damage(plan, *todo[i].first, p, actual);
  });
  std::vector<Damage> damaged;
  for (std::optional<Damage>& d : found) {
    if (d) damaged.push_back(std::move(*d));
  }
  return damaged;
}

enum class Read { in_part, whole };

// The pieces with a recorded checksum that the new tensors of `files` read as `how` says.
std::vector<PieceOf> pieces_read_by(const ReshardPlan& plan, const std::vector<output::FileWork>& files,
                                    Read how) {
  std::set<PieceOf, InFileOrder> pieces;
  for (const output::FileWork& w : files) {
    for (const NewTensor& t : plan.outputs[w.planned->rank].tensors) {
      const LogicalTensor& logical = plan.logical[t.logical];
      for (const PieceRead& read : pieces_read(plan, t)) {
        const Piece& p = logical.pieces[read.piece];
        if (p.xxh3 && read.whole == (how == Read::whole)) pieces.insert({&logical, &p});
      }
    }
  }
  return {pieces.begin(), pieces.end()};
}

}  // namespace

std::string damage_message(const std::string& path, std::string_view tensor, bool replicated,
                           std::uint64_t actual, std::uint64_t recorded) {
  if (replicated) {
    return fmt::format("{}: {} (replicated) has xxh3 {}, the manifest says {}", path, tensor,
                       output::xxh3_hex(actual), output::xxh3_hex(recorded));
  }
  return fmt::format("{}: {} has xxh3 {}, the manifest says {} (the file was damaged or replaced)", path,
                     tensor, output::xxh3_hex(actual), output::xxh3_hex(recorded));
}

void check_pieces_up_front(const ReshardPlan& plan, const std::vector<output::FileWork>& files,
                           const std::vector<io::ReadOnlyFile>& inputs, unsigned threads) {
  // The pieces read whole are listed only when needed: merging mp N into M < N reads every piece
  // whole, 100,000s at a large model's tensor count.
  std::vector<Damage> damaged =
      hash_pieces(plan, pieces_read_by(plan, files, Read::in_part), inputs, threads);
  if (damaged.empty()) return;
  std::vector<Damage> more = hash_pieces(plan, pieces_read_by(plan, files, Read::whole), inputs, threads);
  damaged.insert(damaged.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  more = hash_copies(plan, inputs, threads);
  damaged.insert(damaged.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  refuse_damage(plan, std::move(damaged), "Nothing was written.");
}

std::vector<Damage> hash_copies(const ReshardPlan& plan, const std::vector<io::ReadOnlyFile>& inputs,
                                unsigned threads, bool drop, const std::atomic<bool>* stop) {
  std::vector<PieceOf> todo;
  for (const LogicalTensor& t : plan.logical) {
    for (const Piece& copy : t.copies) todo.emplace_back(&t, &copy);
  }
  return hash_pieces(plan, std::move(todo), inputs, threads, drop, stop);
}

PieceHashes::PieceHashes(const ReshardPlan& plan, const NewTensor& tensor)
    : plan_(plan), logical_(plan.logical[tensor.logical]), hashers_(logical_.pieces.size()) {
  for (const PieceRead& read : pieces_read(plan, tensor)) {
    if (read.whole && logical_.pieces[read.piece].xxh3) hashers_[read.piece].emplace();
  }
}

PieceBytes PieceHashes::hook() {
  if (std::none_of(hashers_.begin(), hashers_.end(), [](const auto& h) { return h.has_value(); })) return {};
  return [this](std::size_t piece, std::span<const std::byte> bytes) {
    if (hashers_[piece]) hashers_[piece]->update(bytes);
  };
}

void PieceHashes::check(std::vector<Damage>& damaged) const {
  for (std::size_t i = 0; i < hashers_.size(); ++i) {
    if (!hashers_[i]) continue;
    const std::uint64_t actual = hashers_[i]->digest();
    if (actual != *logical_.pieces[i].xxh3)
      damaged.push_back(damage(plan_, logical_, logical_.pieces[i], actual));
  }
}

void refuse_damage(const ReshardPlan& plan, std::vector<Damage> damaged, std::string_view outcome) {
  std::sort(damaged.begin(), damaged.end(), [](const Damage& a, const Damage& b) {
    return std::pair(a.file, a.offset) < std::pair(b.file, b.offset);
  });
  // A replicated copy read by every new file is found damaged by each.
  damaged.erase(
      std::unique(damaged.begin(), damaged.end(),
                  [](const Damage& a, const Damage& b) { return a.file == b.file && a.offset == b.offset; }),
      damaged.end());
  Diagnostics problems(ErrorKind::input);
  for (Damage& d : damaged) problems.add(std::move(d.message));
  problems.check(
      fmt::format("cannot reshard {}: its rank files do not hold what its manifest records", plan.from),
      Diagnostics::kMaxListed, outcome);
}

}  // namespace shardwise::reshard
