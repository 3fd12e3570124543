#include <shardwise/core/cleanup.hpp>

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

// How the registry stays safe for a signal handler:
// - Paths live in a fixed static array of slots (no allocation, nothing to free in the handler).
// - Each slot has an atomic state. Only threads holding `g_registry_mutex` move a slot
//   free -> writing -> ready -> free and write its path; the handler never takes the mutex (it
//   could be interrupting the holder). The handler only moves ready -> claimed (compare-exchange),
//   so it reads a path only while it is complete, and a claimed slot is never rewritten: an
//   unregister that loses the race leaves it to the handler, and register never reuses it.
// - The handler calls only unlink, sigaction and raise, all async-signal-safe.
// Paths are used as given: a relative path assumes the working directory does not change.

namespace shardwise {

namespace {

enum SlotState : int { kFree = 0, kWriting = 1, kReady = 2, kClaimedByHandler = 3 };

constexpr std::size_t kSlots = 256;          // simultaneous temporaries; one per file being written
constexpr std::size_t kPathCapacity = 4096;  // PATH_MAX, terminating zero included

struct Slot {
  std::atomic<int> state{kFree};
  char path[kPathCapacity] = {};
};
static_assert(std::atomic<int>::is_always_lock_free, "the handler needs lock-free atomics");

std::array<Slot, kSlots> g_slots;
std::mutex g_registry_mutex;
std::atomic<bool> g_interrupted{false};
std::once_flag g_install_once;

void on_terminating_signal(int signal_number) {
  const int saved_errno = errno;
  g_interrupted.store(true);
  for (Slot& slot : g_slots) {
    int expected = kReady;
    if (slot.state.compare_exchange_strong(expected, kClaimedByHandler)) ::unlink(slot.path);
  }
  // Die of the same signal, so the parent sees "killed by SIGINT/SIGTERM" (the signal is blocked
  // while this handler runs; it is delivered with the default action as soon as we return).
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  ::sigaction(signal_number, &default_action, nullptr);
  ::raise(signal_number);
  errno = saved_errno;
}

}  // namespace

void install_cleanup_handlers() {
  std::call_once(g_install_once, [] {
    struct sigaction action {};
    action.sa_handler = on_terminating_signal;
    sigemptyset(&action.sa_mask);
    // Block both while either runs, so a second Ctrl-C cannot interleave with the unlinking.
    sigaddset(&action.sa_mask, SIGINT);
    sigaddset(&action.sa_mask, SIGTERM);
    for (int signal_number : {SIGINT, SIGTERM}) {
      // A signal the process was started with ignored (`nohup`, `cmd &` in a script: SIGINT) stays
      // ignored: whoever started it chose that the signal must not end it.
      struct sigaction inherited {};
      if (::sigaction(signal_number, nullptr, &inherited) == 0 && inherited.sa_handler == SIG_IGN) continue;
      if (::sigaction(signal_number, &action, nullptr) != 0) {
        throw Error(ErrorKind::io, fmt::format("cannot install the handler for signal {}: {}", signal_number,
                                               std::strerror(errno)));
      }
    }
  });
}

void register_temp_file(const std::string& path) {
  if (path.empty() || path.size() >= kPathCapacity || path.find('\0') != std::string::npos) {
    throw Error(ErrorKind::io, fmt::format("cannot register temporary file {}: path is empty, contains a NUL "
                                           "or is longer than {} bytes",
                                           path, kPathCapacity - 1));
  }
  std::lock_guard lock(g_registry_mutex);
  for (Slot& slot : g_slots) {
    if (slot.state.load() != kFree) continue;
    slot.state.store(kWriting);
    std::memcpy(slot.path, path.c_str(), path.size() + 1);
    slot.state.store(kReady);  // seq_cst: the handler sees the whole path once it sees kReady
    return;
  }
  throw Error(ErrorKind::io, fmt::format("cannot register temporary file {}: {} temporary files are "
                                         "already open",
                                         path, kSlots));
}

void unregister_temp_file(const std::string& path) {
  std::lock_guard lock(g_registry_mutex);
  for (Slot& slot : g_slots) {
    if (slot.state.load() != kReady || path != slot.path) continue;
    int expected = kReady;
    // Losing this exchange means the handler claimed the slot: it owns it until the process dies.
    slot.state.compare_exchange_strong(expected, kFree);
    return;
  }
}

bool interrupted() noexcept { return g_interrupted.load(); }

}  // namespace shardwise
