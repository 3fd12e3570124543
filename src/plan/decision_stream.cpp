#include "plan/decision_stream.hpp"

#include "plan/ownership_scopes.hpp"
#include "plan/packed_groups.hpp"

#include <algorithm>
#include <stdexcept>

namespace shardwise::plan::detail {

DecisionStream::Setup& DecisionStream::default_setup() {
  static Setup setup;
  return setup;
}

DecisionStream::DecisionStream(const st::Checkpoint& checkpoint, const rules::Rules& rules,
                               const rules::Params& params, Setup setup)
    : checkpoint_(checkpoint),
      rules_(rules),
      params_(params),
      block_(std::max<std::size_t>(setup.block, 1)),
      blocks_((checkpoint.tensors().size() + block_ - 1) / block_) {
  if (setup.mode == Mode::automatic)
    setup.mode = blocks_ < 2 || std::thread::hardware_concurrency() < 2 ? Mode::inline_only : Mode::shared;
  if (setup.mode == Mode::inline_only) return;
  ring_.resize(kSlots);
  for (Block& block : ring_) block.decisions.resize(block_);
  if (setup.mode == Mode::shared) worker_ = std::thread([this] { decide_all(); });
}

DecisionStream::~DecisionStream() {
  if (!worker_.joinable()) return;
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void DecisionStream::decide(std::size_t tensor, Decided& out, Previous& previous) const {
  const std::string_view name = checkpoint_.tensors()[tensor].info->name;
  rules_.decide_into(name, params_, out);
  out.output_is_source = out.kind == rules::Decision::Kind::place && out.output == name;
  out.group_hash = out.kind == rules::Decision::Kind::place && out.layout != nullptr
                       ? PackedGroups::hash(out.layout, out.group)
                       : 0;
  const bool whole = out.kind == rules::Decision::Kind::place && out.chunks.empty();
  const bool member = whole && out.layout != nullptr;
  out.same_group_as_previous = member && previous.layout == out.layout && previous.group == out.group;
  previous.layout = member ? out.layout : nullptr;
  if (member) previous.group.assign(out.group);
  const bool owned = whole && out.owner.has_value();
  const std::string_view scope = owned ? OwnershipScopes::scope_name(*out.owner, out.output) : "";
  out.same_scope_as_previous = owned && previous.owner == out.owner->rule && previous.scope == scope;
  previous.owner = owned ? out.owner->rule : nullptr;
  if (owned) previous.scope.assign(scope);
}

const Decided* DecisionStream::peek(std::size_t ahead) const {
  if (current_ == nullptr || offset_ == 0) return nullptr;
  const std::size_t offset = offset_ - 1 + ahead;
  return offset < current_->size ? &current_->decisions[offset] : nullptr;
}

// Runs without the lock: a block claimed and not ready belongs to the thread that claimed it.
void DecisionStream::fill(Block& block, std::size_t first) {
  block.size = 0;
  block.error = nullptr;
  block.previous.layout = nullptr;
  block.previous.owner = nullptr;
  const std::size_t end = std::min(first + block_, checkpoint_.tensors().size());
  try {
    for (std::size_t tensor = first; tensor < end; ++tensor, ++block.size)
      decide(tensor, block.decisions[block.size], block.previous);
  } catch (...) {
    block.error = std::current_exception();
  }
}

bool DecisionStream::decide_next(std::unique_lock<std::mutex>& lock, bool for_consumer) {
  const std::size_t b = claimed_;
  // The block's slot is free once the consumer has left the block that held it before.
  if (b >= blocks_ || b >= consumer_ + kSlots) return false;
  // After a failed block only the consumer claims, and only blocks it asks for (a caller that
  // goes on past the error).
  if (failed_ && !(for_consumer && b <= consumer_)) return false;
  ++claimed_;
  Block& block = ring_[b % kSlots];
  lock.unlock();
  fill(block, b * block_);
  lock.lock();
  block.ready = true;
  if (block.error) failed_ = true;
  changed_.notify_all();
  return true;
}

void DecisionStream::decide_all() {
  std::unique_lock lock(mutex_);
  while (!stop_ && !failed_ && claimed_ < blocks_) {
    if (!decide_next(lock, false)) changed_.wait(lock);
  }
}

Decided& DecisionStream::next() {
  if (tensor_ >= checkpoint_.tensors().size())
    throw std::out_of_range("DecisionStream::next called after the last tensor");
  const std::size_t tensor = tensor_++;
  if (ring_.empty()) {
    decide(tensor, inline_, previous_);
    return inline_;
  }
  if (current_ == nullptr || offset_ == block_) {
    const std::size_t b = tensor / block_;
    Block& block = ring_[b % kSlots];
    std::unique_lock lock(mutex_);
    if (current_ != nullptr) current_->ready = false;  // consumed: its slot may take a later block
    consumer_ = b;
    changed_.notify_all();
    // Decide a later block rather than wait for this one.
    while (!block.ready) {
      if (!decide_next(lock, true)) changed_.wait(lock);
    }
    current_ = &block;
    offset_ = 0;
  }
  const std::size_t offset = offset_++;
  if (offset >= current_->size) {
    if (current_->error) std::rethrow_exception(current_->error);
    throw std::logic_error("DecisionStream: a block ended early without an error");
  }
  return current_->decisions[offset];
}

}  // namespace shardwise::plan::detail
