#pragma once
// Internal to the planner: the rules' decisions for a checkpoint's tensors, in order. Deciding a
// name (regex matching, renames) costs about as much as placing it, and placement must visit the
// tensors in order (packed groups, messages), so a second thread decides blocks of names ahead of
// the placement: a two-stage pipeline. At most kDepth blocks are held, so the memory does not grow
// with the checkpoint. Small checkpoints, and machines with one core, decide inline.

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

namespace shardwise::plan::detail {

// A tensor's decision, with what the deciding thread also knows of it: the placing thread then
// reads neither the decision's output string nor the tensor's name to learn it (reading what the
// other core wrote costs a cache miss a tensor).
struct Decided : rules::Decision {
  bool output_is_source = false;  // a placed decision whose output is the tensor's own name
  std::size_t group_hash = 0;     // a placed packed member: PackedGroups::hash(layout, group)
  // Placed alike, the tensor before this one is a member of the same packed group / owned in the
  // same ownership scope (neither is cut into chunks).
  bool same_group_as_previous = false;
  bool same_scope_as_previous = false;
};

class DecisionStream {
 public:
  DecisionStream(const st::Checkpoint& checkpoint, const rules::Rules& rules, const rules::Params& params);
  ~DecisionStream();  // stops the worker (when the planner gives up early) and joins it
  DecisionStream(const DecisionStream&) = delete;
  DecisionStream& operator=(const DecisionStream&) = delete;

  // The decision for the next tensor of checkpoint.tensors(), in order; call it once per tensor.
  // An error the rules threw while deciding it is rethrown here.
  Decided& next();
  // The decision `ahead` tensors after the one next() gave last, when it is decided already (in
  // the same block); else null. Lets the placer fetch what that tensor will need.
  const Decided* peek(std::size_t ahead) const;

 private:
  static constexpr std::size_t kBlock = 1024;  // decisions per block
  static constexpr std::size_t kDepth = 2;     // blocks decided ahead at most

  // A block's decisions are decided into the same kBlock Decisions each time (Rules::decide_into):
  // their strings keep their memory from block to block, so deciding allocates almost nothing.
  struct Block {
    std::vector<Decided> decisions;  // kBlock of them; the first `size` hold this block's
    std::size_t size = 0;
    std::exception_ptr error;  // what deciding the block threw; its decisions stop there
    bool ready = false;        // decided, not yet consumed
  };

  // The group and scope of the tensor decided last, for Decided::same_*_as_previous.
  struct Previous {
    const rules::Layout* layout = nullptr;  // null: not a packed member
    std::string group;
    const rules::RuleRef* owner = nullptr;  // null: not owned
    std::string scope;
  };
  void decide(std::size_t tensor, Decided& out, Previous& previous) const;
  void decide_all();  // the worker
  void fill(Block& block, std::size_t first);

  const st::Checkpoint& checkpoint_;
  const rules::Rules& rules_;
  const rules::Params& params_;
  const std::size_t blocks_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Block> ring_;  // block b lives in ring_[b % kDepth]
  bool stop_ = false;
  std::thread worker_;

  // The consumer's position.
  std::size_t tensor_ = 0;
  Block* current_ = nullptr;
  Decided inline_;     // without a worker
  Previous previous_;  // of the thread that decides: the worker, or the consumer without one
};

}  // namespace shardwise::plan::detail
