#pragma once
// Handing freed memory back to the system. The allocator keeps what a phase freed (planning's
// temporaries, a finished file's manifest entry) for later use, and a later block that does not fit
// the holes left grows the process instead: a long run's peak memory then creeps up file by file.

namespace shardwise {

// Returns the free pages of every allocator arena to the system (glibc's malloc_trim; elsewhere
// nothing). Costs a walk over the free lists: call it between phases, not per tensor.
void release_free_memory() noexcept;

}  // namespace shardwise
