#include "reshard/piece_check.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include <fmt/format.h>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>

#include "core/parallel.hpp"

namespace shardwise::reshard {

namespace {

using PieceRef = std::pair<std::size_t, std::size_t>;  // (logical tensor, piece) indices

Damage damage(const ReshardPlan& plan, const LogicalTensor& tensor, const Piece& piece, std::uint64_t actual) {
  return {piece.file, piece.offset,
          fmt::format("{}: {} has xxh3 {}, the manifest says {} (the file was damaged or replaced)",
                      plan.old_files[piece.file].path, tensor.name, convert::xxh3_hex(actual),
                      convert::xxh3_hex(*piece.xxh3))};
}

// Hashes `pieces` on all threads, in file order (a cold page cache is filled by sequential reads).
std::vector<Damage> hash_pieces(const ReshardPlan& plan, const std::set<PieceRef>& pieces,
                                const std::vector<io::ReadOnlyFile>& inputs, unsigned threads) {
  std::vector<PieceRef> todo(pieces.begin(), pieces.end());
  const auto piece = [&](const PieceRef& ref) -> const Piece& { return plan.logical[ref.first].pieces[ref.second]; };
  std::sort(todo.begin(), todo.end(), [&](const PieceRef& a, const PieceRef& b) {
    return std::pair(piece(a).file, piece(a).offset) < std::pair(piece(b).file, piece(b).offset);
  });
  std::vector<std::optional<Damage>> found(todo.size());
  std::vector<std::vector<std::byte>> buffers(std::max(1u, threads), std::vector<std::byte>(1u << 20));
  run_parallel(todo.size(), threads, [&](std::size_t i, unsigned worker) {
    if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
    const Piece& p = piece(todo[i]);
    const io::ReadOnlyFile& in = inputs[p.file];
    const std::uint64_t actual = convert::hash_file_range(in.fd(), in.path(), p.offset, p.bytes, buffers[worker]);
    if (actual != *p.xxh3) found[i] = damage(plan, plan.logical[todo[i].first], p, actual);
  });
  std::vector<Damage> damaged;
  for (std::optional<Damage>& d : found) {
    if (d) damaged.push_back(std::move(*d));
  }
  return damaged;
}

}  // namespace

void check_pieces_up_front(const ReshardPlan& plan, const std::vector<convert::FileWork>& files,
                           const std::vector<io::ReadOnlyFile>& inputs, unsigned threads) {
  std::set<PieceRef> partial;
  std::set<PieceRef> whole;
  for (const convert::FileWork& w : files) {
    for (const NewTensor& t : plan.outputs[w.planned->rank].tensors) {
      for (const PieceRead& read : pieces_read(plan, t)) {
        if (!plan.logical[t.logical].pieces[read.piece].xxh3) continue;
        (read.whole ? whole : partial).insert({t.logical, read.piece});
      }
    }
  }
  std::vector<Damage> damaged = hash_pieces(plan, partial, inputs, threads);
  if (damaged.empty()) return;
  std::vector<Damage> more = hash_pieces(plan, whole, inputs, threads);
  damaged.insert(damaged.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  refuse_damage(plan, std::move(damaged), "Nothing was written.");
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
    if (actual != *logical_.pieces[i].xxh3) damaged.push_back(damage(plan_, logical_, logical_.pieces[i], actual));
  }
}

void refuse_damage(const ReshardPlan& plan, std::vector<Damage> damaged, std::string_view outcome) {
  std::sort(damaged.begin(), damaged.end(),
            [](const Damage& a, const Damage& b) { return std::pair(a.file, a.offset) < std::pair(b.file, b.offset); });
  Diagnostics problems(ErrorKind::input);
  for (Damage& d : damaged) problems.add(std::move(d.message));
  problems.check(fmt::format("cannot reshard {}: its rank files do not hold what its manifest records", plan.from),
                 Diagnostics::kMaxListed, outcome);
}

}  // namespace shardwise::reshard
