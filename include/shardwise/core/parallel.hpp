#pragma once
// Running independent tasks on a few threads (verify's checks, reshard's piece checks and files).

#include <cstddef>
#include <functional>

namespace shardwise {

// Calls body(task, worker) once for every task in [0, count), in index order of starting, on
// min(threads, count) threads; `worker` (< threads) lets a task use that thread's buffers. Put
// the biggest tasks first: they start first. After the first exception no new task starts; it is
// rethrown once every thread has stopped.
void run_parallel(std::size_t count, unsigned threads,
                  const std::function<void(std::size_t, unsigned)>& body);

// Runs `here` on the calling thread while `there` runs on another (the two halves of a large
// input), and returns when both are done; without a thread to start, runs them one after the other.
// Rethrows what `here` threw, else what `there` threw: the error a run of `here` then `there`
// reports first.
void run_beside(const std::function<void()>& here, const std::function<void()>& there);

// The thread count for a request of `requested` (0: one per hardware thread).
unsigned thread_count(unsigned requested);

}  // namespace shardwise
