#include <shardwise/core/parallel.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace shardwise {

unsigned thread_count(unsigned requested) {
  const unsigned wanted = requested != 0 ? requested : std::max(1u, std::thread::hardware_concurrency());
  return std::min(wanted, 256u);
}

void run_parallel(std::size_t count, unsigned threads,
                  const std::function<void(std::size_t, unsigned)>& body) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex error_mutex;
  auto work = [&](unsigned worker) {
    for (std::size_t task = next++; task < count && !failed.load(); task = next++) {
      try {
        body(task, worker);
      } catch (...) {
        const std::lock_guard lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        failed = true;
      }
    }
  };
  const auto n =
      static_cast<unsigned>(std::min<std::size_t>(std::max(1u, threads), std::max<std::size_t>(count, 1)));
  std::vector<std::thread> pool;
  for (unsigned worker = 1; worker < n; ++worker) {
    try {
      pool.emplace_back(work, worker);
    } catch (const std::system_error&) {
      break;  // fewer threads than asked: the ones running take every task
    }
  }
  work(0);
  for (std::thread& t : pool) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

void run_beside(const std::function<void()>& here, const std::function<void()>& there) {
  std::exception_ptr there_failed;
  const auto run_there = [&] {
    try {
      there();
    } catch (...) {
      there_failed = std::current_exception();
    }
  };
  std::thread other;
  try {
    other = std::thread(run_there);
  } catch (const std::system_error&) {
    here();
    there();
    return;
  }
  try {
    here();
  } catch (...) {
    other.join();
    throw;
  }
  other.join();
  if (there_failed) std::rethrow_exception(there_failed);
}

}  // namespace shardwise
