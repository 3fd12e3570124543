#include <shardwise/core/error.hpp>

#include <cstring>

#include <fmt/format.h>

namespace shardwise {

void throw_os_error(const std::string& what, const std::string& path, int errno_value) {
  throw Error(ErrorKind::io, fmt::format("{} {}: {}", what, path, std::strerror(errno_value)));
}

void Diagnostics::check(const std::string& summary, std::size_t max_listed, std::string_view footer) const {
  if (messages_.empty()) return;
  std::string text =
      fmt::format("{} ({} problem{}):", summary, messages_.size(), messages_.size() == 1 ? "" : "s");
  std::size_t listed = 0;
  for (const auto& m : messages_) {
    if (listed++ == max_listed) {
      text += fmt::format("\n  ... and {} more", messages_.size() - max_listed);
      break;
    }
    text += "\n  " + m;
  }
  if (!footer.empty()) text += fmt::format("\n{}", footer);
  throw Error(kind_, text);
}

}  // namespace shardwise
