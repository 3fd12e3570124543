#pragma once
// The old manifest's tensor entries as planning a reshard keeps them: at a large model's tensor count
// (240,000 entries) compact records in blocks, names in the plan's arena, origins in its lists.
// Internal to reshard.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/reshard/reshard.hpp>

namespace shardwise::reshard {

// A tensor entry of the old manifest as planning keeps it (240,000 at Pro's count): its name in the
// plan's arena, its cut's fields, its origin among the plan's; and once its file's header agrees,
// where its bytes are (`seen`: it is a piece, to join its logical tensor).
struct Entry {
  plan::Name name;
  std::uint64_t xxh3 = 0;
  plan::Shape shape;  // the cut's, as written
  plan::Placement placement;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  std::uint64_t size = 0;
  std::shared_ptr<const output::CompositeCut> composite{};
  Piece piece{};  // once seen
  std::uint32_t origin = kNoOrigin;
  std::uint32_t seen = 0;  // 0: not a piece; otherwise the order in which pieces were seen, from 1
  st::DType dtype{};
  bool has_cut = false;
};

// Every entry, in blocks that go as soon as their pieces have joined their logical tensors (the
// logical tensors then take the memory the entries leave), and each output entry's list of them.
class Entries {
 public:
  static constexpr std::size_t kBlock = 2048;

  std::size_t size() const noexcept { return size_; }
  Entry& operator[](std::size_t i) { return blocks_[i / kBlock][i % kBlock]; }
  const Entry& operator[](std::size_t i) const { return blocks_[i / kBlock][i % kBlock]; }
  // Each output entry's tensors (indices), in the manifest's order.
  const std::vector<std::uint32_t>& of_output(std::size_t output) const { return by_output_[output]; }
  std::size_t outputs() const noexcept { return by_output_.size(); }
  void resize_outputs(std::size_t n) { by_output_.resize(n); }

  // `output`: the output entry listing it; none: a piece of no entry (a fused output's part).
  Entry& add(std::optional<std::size_t> output, Entry&& entry) {
    if (size_ == std::numeric_limits<std::uint32_t>::max())
      throw Error(ErrorKind::input, "the manifest lists more tensors than a plan holds");
    if (size_ % kBlock == 0) {
      blocks_.emplace_back();
      blocks_.back().reserve(kBlock);
      left_.push_back(0);
    }
    if (output) {
      if (by_output_.size() <= *output) by_output_.resize(*output + 1);
      by_output_[*output].push_back(static_cast<std::uint32_t>(size_));
    }
    ++size_;
    return blocks_.back().emplace_back(std::move(entry));
  }
  // Entry i is a piece: its block stays until it has joined (joined(i)).
  void mark_seen(std::size_t i, std::uint32_t order) {
    (*this)[i].seen = order;
    ++left_[i / kBlock];
  }
  void joined(std::size_t i) {
    if (--left_[i / kBlock] != 0) return;
    std::vector<Entry>().swap(blocks_[i / kBlock]);
    // Given back as the join goes (the logical tensors it makes are allocated elsewhere).
    if (++freed_ % kBlocksPerRelease == 0) release_free_memory();
  }
  // Once every file is read: the entries that became pieces; the output lists go, and so do blocks
  // without a piece (a fused output's entry, gathered as its parts, is none).
  std::vector<std::uint32_t> pieces() {
    std::vector<std::vector<std::uint32_t>>().swap(by_output_);
    std::vector<std::uint32_t> seen;
    for (std::size_t b = 0; b < blocks_.size(); ++b) {
      if (left_[b] == 0) std::vector<Entry>().swap(blocks_[b]);
      for (std::size_t i = 0; i < blocks_[b].size(); ++i) {
        if (blocks_[b][i].seen != 0) seen.push_back(static_cast<std::uint32_t>(b * kBlock + i));
      }
    }
    return seen;
  }

 private:
  std::vector<std::vector<Entry>> blocks_;
  static constexpr std::size_t kBlocksPerRelease = 16;  // ~5 MB
  std::vector<std::size_t> left_;                       // per block: its pieces still to join
  std::size_t freed_ = 0;
  std::vector<std::vector<std::uint32_t>> by_output_;
  std::size_t size_ = 0;
};

// `name` kept in the plan's arena.
plan::Name arena_name(ReshardPlan& plan, std::string_view name);

// Origins as the plan keeps them (Origin): names in its arena (an origin named as its tensor shares
// the tensor's), each irreversible text once.
class OriginTable {
 public:
  explicit OriginTable(ReshardPlan& plan) : plan_(plan) {
    for (std::uint32_t i = 0; i < plan.origin_texts.size(); ++i) texts_.try_emplace(plan.origin_texts[i], i);
  }
  // `origin` of the tensor named `tensor_name` kept in the plan (Origin); its index there.
  std::uint32_t add(output::TensorOrigin&& origin, const plan::Name& tensor_name);

 private:
  ReshardPlan& plan_;
  std::map<std::string, std::uint32_t, std::less<>> texts_;
};

// An entry of the manifest as planning keeps it; without its origin when `keep_origin` is false
// (reversing: its caller reads the manifest's own).
Entry entry_of(ReshardPlan& plan, OriginTable& origins, output::ManifestTensor&& t, bool keep_origin);

// The tensor entries of `manifest` (already read whole), moved out of it; or, when `keep`, copied
// without their origins (reversing: its caller reads the manifest's own).
void entries_of(ReshardPlan& plan, output::Manifest& manifest, bool keep, Entries& entries);

}  // namespace shardwise::reshard
