#pragma once
// The one error type of shardwise. Thrown deep, caught once in main, printed as
// `shardwise: error: <message>`, mapped to an exit code by its kind.

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace shardwise {

// What went wrong decides the exit code, so scripts can tell a bad rules file from a bad input.
enum class ErrorKind {
  usage = 2,   // bad command line
  rules = 3,   // the rules file is invalid
  input = 4,   // the checkpoint is malformed, or does not fit the rules (unmatched, bad split, ...)
  io = 5,      // the OS refused (ENOSPC, EACCES, EIO, ...), or the output folder is unsafe to use
  verify = 6,  // verification found differences
  interrupted = 130,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }
  int exit_code() const noexcept { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

// Throws an io Error naming `path` with strerror(errno_value).
[[noreturn]] void throw_os_error(const std::string& what, const std::string& path, int errno_value);

// Collect, then stop: a phase adds every problem it finds, then calls check() once, which throws a
// single Error listing them all (one per line, at most `max_listed`, then a count of the rest).
class Diagnostics {
 public:
  explicit Diagnostics(ErrorKind kind) : kind_(kind) {}
  void add(std::string message) { messages_.push_back(std::move(message)); }
  bool empty() const noexcept { return messages_.empty(); }
  std::size_t size() const noexcept { return messages_.size(); }
  const std::vector<std::string>& messages() const noexcept { return messages_; }
  // Throws when any problem was added. `summary` heads the message, e.g. "the plan has 3 problems";
  // `footer`, when given, ends it on a line of its own (what happened, what to do).
  void check(const std::string& summary, std::size_t max_listed = kMaxListed,
             std::string_view footer = {}) const;
  static constexpr std::size_t kMaxListed = 200;

 private:
  ErrorKind kind_;
  std::vector<std::string> messages_;
};

}  // namespace shardwise
