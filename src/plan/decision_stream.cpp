#include "plan/decision_stream.hpp"

#include "plan/ownership_scopes.hpp"
#include "plan/packed_groups.hpp"

#include <algorithm>
#include <stdexcept>

namespace shardwise::plan::detail {

DecisionStream::DecisionStream(const st::Checkpoint& checkpoint, const rules::Rules& rules,
                               const rules::Params& params)
    : checkpoint_(checkpoint),
      rules_(rules),
      params_(params),
      blocks_((checkpoint.tensors().size() + kBlock - 1) / kBlock) {
  if (blocks_ < 2 || std::thread::hardware_concurrency() < 2) return;  // not worth a thread
  ring_.resize(kDepth);
  for (Block& block : ring_) block.decisions.resize(kBlock);
  worker_ = std::thread([this] { decide_all(); });
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
  if (current_ == nullptr || tensor_ == 0) return nullptr;
  const std::size_t offset = (tensor_ - 1) % kBlock + ahead;
  return offset < current_->size ? &current_->decisions[offset] : nullptr;
}

// Runs without the lock: a block that is not ready belongs to the worker alone.
void DecisionStream::fill(Block& block, std::size_t first) {
  block.size = 0;
  block.error = nullptr;
  const std::size_t end = std::min(first + kBlock, checkpoint_.tensors().size());
  try {
    for (std::size_t tensor = first; tensor < end; ++tensor, ++block.size)
      decide(tensor, block.decisions[block.size], previous_);
  } catch (...) {
    block.error = std::current_exception();
  }
}

void DecisionStream::decide_all() {
  for (std::size_t b = 0; b < blocks_; ++b) {
    Block& block = ring_[b % kDepth];
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || !block.ready; });
      if (stop_) return;
    }
    fill(block, b * kBlock);
    const bool failed = block.error != nullptr;
    {
      const std::lock_guard lock(mutex_);
      block.ready = true;
    }
    changed_.notify_all();
    if (failed) return;  // the planner stops at this block's error
  }
}

Decided& DecisionStream::next() {
  const std::size_t tensor = tensor_++;
  if (!worker_.joinable()) {
    decide(tensor, inline_, previous_);
    return inline_;
  }
  const std::size_t offset = tensor % kBlock;
  if (offset == 0) {
    Block& block = ring_[(tensor / kBlock) % kDepth];
    std::unique_lock lock(mutex_);
    if (current_ != nullptr) {
      current_->ready = false;  // consumed: the worker may decide the next block into it
      changed_.notify_all();
    }
    changed_.wait(lock, [&] { return block.ready; });
    current_ = &block;
  }
  if (offset >= current_->size) {
    if (current_->error) std::rethrow_exception(current_->error);
    throw std::out_of_range("DecisionStream::next called after the last tensor");
  }
  return current_->decisions[offset];
}

}  // namespace shardwise::plan::detail
