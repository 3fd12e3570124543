// An LD_PRELOAD shim that makes chosen system calls fail, for tests of every OS error path of a
// conversion (tests/cli/fault_injection_test.cpp). It runs as root like CI, so a permission error
// has to come from here rather than from chmod.
//
// SHARDWISE_FAULT="OP,ERROR,N,PATH" makes the N-th call (1-based) of OP whose path contains the
// substring PATH, and every later one, fail:
//   OP     open (only opens that create: O_CREAT), open-existing (the other opens), read, pread,
//          write, pwrite, fsync, rename (either name), mkdir, fallocate, sync_file_range,
//          sync_file_range_wait (only the calls that wait: SYNC_FILE_RANGE_WAIT_BEFORE), fadvise
//          (posix_fadvise: it returns the error rather than setting errno)
//   ERROR  an errno name (EIO, ENOSPC, EACCES, EROFS, EDQUOT), "short" (read or write at most half
//          of what was asked, at least one byte: callers must retry), or "short+ENOSPC" (the N-th
//          call short, the later ones ENOSPC: a disk filling up mid-write), or "delay" (each call
//          waits 50 ms first, then succeeds: a slow disk), or "gate" (each call waits while the
//          file SHARDWISE_FAULT_GATE names exists, polling every 10 ms for at most 5 minutes, then
//          succeeds: a run held busy until the test lets it go, whatever the machine's load; the
//          first call to wait creates the file SHARDWISE_FAULT_GATE.reached, so the test knows)
// For calls on a descriptor the path is the one /proc/self/fd names. Without the variable the
// shim does nothing. Not linked with the sanitizers: it forwards to whatever comes next
// (libasan's interceptors in a sanitizer build, then libc).

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace {

enum class Mode { off, fail, shortened, short_then_full, delay, gate };

struct Fault {
  Mode mode = Mode::off;
  char op[32] = {};
  int error = 0;
  long nth = 1;
  char path[256] = {};
};

int errno_of(const char* name) {
  struct Entry {
    const char* name;
    int value;
  };
  static const Entry kErrors[] = {{"EIO", EIO},     {"ENOSPC", ENOSPC}, {"EACCES", EACCES},
                                  {"EROFS", EROFS}, {"EDQUOT", EDQUOT}, {"EPERM", EPERM}};
  for (const Entry& e : kErrors) {
    if (std::strcmp(name, e.name) == 0) return e.value;
  }
  return 0;
}

Fault parse(const char* spec) {
  Fault fault;
  char error[32] = {};
  if (spec == nullptr ||
      std::sscanf(spec, "%31[^,],%31[^,],%ld,%255[^\n]", fault.op, error, &fault.nth, fault.path) < 3) {
    return fault;
  }
  if (std::strcmp(error, "short") == 0) {
    fault.mode = Mode::shortened;
  } else if (std::strcmp(error, "delay") == 0) {
    fault.mode = Mode::delay;
  } else if (std::strcmp(error, "gate") == 0) {
    fault.mode = Mode::gate;
  } else if (std::strcmp(error, "short+ENOSPC") == 0) {
    fault.mode = Mode::short_then_full;
    fault.error = ENOSPC;
  } else if ((fault.error = errno_of(error)) != 0) {
    fault.mode = Mode::fail;
  } else {
    std::fprintf(stderr, "fault_shim: unknown error %s in SHARDWISE_FAULT\n", error);
    std::abort();
  }
  return fault;
}

const Fault& fault() {
  static const Fault parsed = parse(std::getenv("SHARDWISE_FAULT"));
  return parsed;
}

std::atomic<long> matching_calls{0};

bool path_matches(const char* path) { return path != nullptr && std::strstr(path, fault().path) != nullptr; }

bool fd_matches(int fd) {
  char link[64];
  char path[4096];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, path, sizeof path - 1);
  if (n < 0) return false;
  path[n] = '\0';
  return path_matches(path);
}

// Creates `<gate>.reached` by the system call itself: the shim's own open would count it.
void signal_reached(const char* gate) {
  char path[4096];
  std::snprintf(path, sizeof path, "%s.reached", gate);
  const long fd = ::syscall(SYS_openat, AT_FDCWD, path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd >= 0) ::syscall(SYS_close, fd);
}

// What the shim does with this call: nothing, fail it (errno set), or shorten it.
enum class Action { pass, fail, shorten };

// `matches` (the path test, a readlink for descriptors) runs only for the chosen operation.
template <typename Matches>
Action decide(const char* op, Matches&& matches) {
  const Fault& f = fault();
  if (f.mode == Mode::off || std::strcmp(op, f.op) != 0 || !matches()) return Action::pass;
  const long call = ++matching_calls;
  if (call < f.nth) return Action::pass;
  if (f.mode == Mode::delay) {
    const struct timespec wait = {0, 50'000'000};
    ::nanosleep(&wait, nullptr);
    return Action::pass;
  }
  if (f.mode == Mode::gate) {
    const char* gate = std::getenv("SHARDWISE_FAULT_GATE");
    static std::atomic<bool> reached{false};
    if (gate != nullptr && !reached.exchange(true)) signal_reached(gate);
    const struct timespec poll = {0, 10'000'000};
    for (int i = 0; gate != nullptr && ::access(gate, F_OK) == 0 && i < 30'000; ++i)
      ::nanosleep(&poll, nullptr);
    return Action::pass;
  }
  if (f.mode == Mode::shortened || (f.mode == Mode::short_then_full && call == f.nth)) return Action::shorten;
  errno = f.error;
  return Action::fail;
}

template <typename F>
F next(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

size_t shortened(size_t count) { return count > 1 ? count / 2 : count; }

using OpenFn = int (*)(const char*, int, ...);
using OpenAtFn = int (*)(int, const char*, int, ...);
using ReadFn = ssize_t (*)(int, void*, size_t);
using PreadFn = ssize_t (*)(int, void*, size_t, off_t);
using WriteFn = ssize_t (*)(int, const void*, size_t);
using PwriteFn = ssize_t (*)(int, const void*, size_t, off_t);
using FsyncFn = int (*)(int);
using RenameFn = int (*)(const char*, const char*);
using MkdirFn = int (*)(const char*, mode_t);
using FallocateFn = int (*)(int, int, off_t, off_t);
using SyncFileRangeFn = int (*)(int, off_t, off_t, unsigned int);
using FadviseFn = int (*)(int, off_t, off_t, int);

mode_t mode_argument(int flags, va_list args) {
  return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE ? static_cast<mode_t>(va_arg(args, int))
                                                                    : 0;
}

int open_checked(const char* symbol, const char* path, int flags, mode_t mode) {
  const char* op = (flags & O_CREAT) != 0 ? "open" : "open-existing";
  if (decide(op, [&] { return path_matches(path); }) == Action::fail) return -1;
  return next<OpenFn>(symbol)(path, flags, mode);
}

ssize_t read_checked(const char* symbol, int fd, void* buffer, size_t count, off_t offset, bool positional) {
  const Action action = decide(positional ? "pread" : "read", [&] { return fd_matches(fd); });
  if (action == Action::fail) return -1;
  if (action == Action::shorten) count = shortened(count);
  return positional ? next<PreadFn>(symbol)(fd, buffer, count, offset)
                    : next<ReadFn>(symbol)(fd, buffer, count);
}

ssize_t write_checked(const char* symbol, int fd, const void* data, size_t count, off_t offset,
                      bool positional) {
  const Action action = decide(positional ? "pwrite" : "write", [&] { return fd_matches(fd); });
  if (action == Action::fail) return -1;
  if (action == Action::shorten) count = shortened(count);
  return positional ? next<PwriteFn>(symbol)(fd, data, count, offset)
                    : next<WriteFn>(symbol)(fd, data, count);
}

}  // namespace

extern "C" {

int open(const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return open_checked("open", path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return open_checked("open64", path, flags, mode);
}

int openat(int dir, const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  const char* op = (flags & O_CREAT) != 0 ? "open" : "open-existing";
  if (decide(op, [&] { return path_matches(path); }) == Action::fail) return -1;
  return next<OpenAtFn>("openat")(dir, path, flags, mode);
}

ssize_t read(int fd, void* buffer, size_t count) { return read_checked("read", fd, buffer, count, 0, false); }
ssize_t pread(int fd, void* buffer, size_t count, off_t offset) {
  return read_checked("pread", fd, buffer, count, offset, true);
}
ssize_t pread64(int fd, void* buffer, size_t count, off_t offset) {
  return read_checked("pread64", fd, buffer, count, offset, true);
}
ssize_t write(int fd, const void* data, size_t count) {
  return write_checked("write", fd, data, count, 0, false);
}
ssize_t pwrite(int fd, const void* data, size_t count, off_t offset) {
  return write_checked("pwrite", fd, data, count, offset, true);
}
ssize_t pwrite64(int fd, const void* data, size_t count, off_t offset) {
  return write_checked("pwrite64", fd, data, count, offset, true);
}

int fsync(int fd) {
  if (decide("fsync", [&] { return fd_matches(fd); }) == Action::fail) return -1;
  return next<FsyncFn>("fsync")(fd);
}

int rename(const char* from, const char* to) {
  if (decide("rename", [&] { return path_matches(from) || path_matches(to); }) == Action::fail) return -1;
  return next<RenameFn>("rename")(from, to);
}

int mkdir(const char* path, mode_t mode) {
  if (decide("mkdir", [&] { return path_matches(path); }) == Action::fail) return -1;
  return next<MkdirFn>("mkdir")(path, mode);
}

int fallocate(int fd, int mode, off_t offset, off_t length) {
  if (decide("fallocate", [&] { return fd_matches(fd); }) == Action::fail) return -1;
  return next<FallocateFn>("fallocate")(fd, mode, offset, length);
}
int sync_file_range(int fd, off_t offset, off_t length, unsigned int flags) {
  if (decide("sync_file_range", [&] { return fd_matches(fd); }) == Action::fail) return -1;
  if ((flags & SYNC_FILE_RANGE_WAIT_BEFORE) != 0 &&
      decide("sync_file_range_wait", [&] { return fd_matches(fd); }) == Action::fail)
    return -1;
  return next<SyncFileRangeFn>("sync_file_range")(fd, offset, length, flags);
}

int posix_fadvise(int fd, off_t offset, off_t length, int advice) {
  if (decide("fadvise", [&] { return fd_matches(fd); }) == Action::fail) return errno;
  return next<FadviseFn>("posix_fadvise")(fd, offset, length, advice);
}
int posix_fadvise64(int fd, off_t offset, off_t length, int advice) {
  if (decide("fadvise", [&] { return fd_matches(fd); }) == Action::fail) return errno;
  return next<FadviseFn>("posix_fadvise64")(fd, offset, length, advice);
}

int fallocate64(int fd, int mode, off_t offset, off_t length) {
  if (decide("fallocate", [&] { return fd_matches(fd); }) == Action::fail) return -1;
  return next<FallocateFn>("fallocate64")(fd, mode, offset, length);
}

}  // extern "C"
