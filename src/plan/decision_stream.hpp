#pragma once
// Internal to the planner: the rules' decisions for a checkpoint's tensors, in order. Deciding a
// name (regex matching, renames) costs more than placing it, and placement must visit the tensors
// in order (packed groups, messages), so the names are decided in blocks, claimed in order: a
// second thread claims the next block and decides it ahead of the placement, and the placing
// thread, when the block it needs is not decided yet, claims and decides the next one itself
// instead of waiting (both cores then decide). At most kSlots blocks are held, so the memory does
// not grow with the checkpoint. Small checkpoints, and machines with one core, decide inline.

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <string>
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
  // same ownership scope (neither is cut into chunks). False at the first tensor of a block decided
  // by the threads (a block is decided without its predecessor): the placer then looks the group
  // or scope up, which finds the same one.
  bool same_group_as_previous = false;
  bool same_scope_as_previous = false;
};

class DecisionStream {
 public:
  // Who decides. `automatic` (the planner's): inline for a checkpoint of one block or on one core,
  // else `shared`. `consumer_only` runs the threads' path with no second thread: the caller of
  // next() claims and decides every block (tests).
  enum class Mode { automatic, inline_only, shared, consumer_only };
  struct Setup {
    Mode mode = Mode::automatic;
    std::size_t block = 512;  // decisions per block
  };
  // The setup of the streams made without one (the planner's): tests change it to run the
  // planner on the threads' path with small blocks, and put it back.
  static Setup& default_setup();

  DecisionStream(const st::Checkpoint& checkpoint, const rules::Rules& rules, const rules::Params& params)
      : DecisionStream(checkpoint, rules, params, default_setup()) {}
  DecisionStream(const st::Checkpoint& checkpoint, const rules::Rules& rules, const rules::Params& params,
                 Setup setup);
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
  // Blocks held at most: the one being placed and those decided or being decided after it. Four
  // blocks of 512 let either thread decide ahead while the other holds one.
  static constexpr std::size_t kSlots = 4;

  // The group and scope of the tensor decided last, for Decided::same_*_as_previous.
  struct Previous {
    const rules::Layout* layout = nullptr;  // null: not a packed member
    std::string group;
    const rules::RuleRef* owner = nullptr;  // null: not owned
    std::string scope;
  };

  // A block's decisions are decided into the same Decisions each time it comes round
  // (Rules::decide_into): their strings keep their memory, so deciding allocates almost nothing.
  struct Block {
    std::vector<Decided> decisions;  // `block` of them; the first `size` hold this block's
    std::size_t size = 0;
    std::exception_ptr error;  // what deciding the block threw; its decisions stop there
    Previous previous;         // the deciding thread's, within the block
    bool ready = false;        // decided, not yet consumed (under the mutex)
  };

  void decide(std::size_t tensor, Decided& out, Previous& previous) const;
  void fill(Block& block, std::size_t first);
  // Under the lock: claims the next block when it may be decided now (its slot is free), decides
  // it without the lock and marks it ready. False when no block could be claimed.
  bool decide_next(std::unique_lock<std::mutex>& lock, bool for_consumer);
  void decide_all();  // the worker

  const st::Checkpoint& checkpoint_;
  const rules::Rules& rules_;
  const rules::Params& params_;
  const std::size_t block_;
  const std::size_t blocks_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Block> ring_;  // block b lives in ring_[b % kSlots]; empty when inline
  // Under the mutex: the next block to claim, the block the consumer holds or waits for (blocks
  // before it are consumed, their slots free), whether a block failed (nothing after it is
  // claimed), and whether the stream is going away.
  std::size_t claimed_ = 0;
  std::size_t consumer_ = 0;
  bool failed_ = false;
  bool stop_ = false;
  std::thread worker_;

  // The consumer's position: the next tensor, the block it is in, the next decision of that block.
  std::size_t tensor_ = 0;
  Block* current_ = nullptr;
  std::size_t offset_ = 0;
  Decided inline_;     // inline
  Previous previous_;  // inline
};

}  // namespace shardwise::plan::detail
