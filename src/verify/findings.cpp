#include "verify/findings.hpp"

#include <algorithm>
#include <tuple>

#include <fmt/format.h>

namespace shardwise::verify {

std::string Finding::str() const {
  return tensor.empty() ? fmt::format("{}: {}", file, what) : fmt::format("{}: {}: {}", file, tensor, what);
}

Findings::Findings(std::vector<std::string> file_order) {
  for (std::size_t i = 0; i < file_order.size(); ++i) rank_.emplace(file_order[i], i);
}

void Findings::add(const std::string& file, const std::string& tensor, std::string what) {
  const std::lock_guard lock(mutex_);
  findings_.push_back({file, tensor, std::move(what)});
  seen_.emplace(file, tensor);
  files_.insert(file);
}

bool Findings::has(const std::string& file) const {
  const std::lock_guard lock(mutex_);
  return files_.count(file) != 0;
}

bool Findings::has(const std::string& file, const std::string& tensor) const {
  const std::lock_guard lock(mutex_);
  return seen_.count({file, tensor}) != 0;
}

std::vector<Finding> Findings::sorted() const {
  const std::lock_guard lock(mutex_);
  std::vector<Finding> out = findings_;
  auto rank = [&](const Finding& f) {
    const auto it = rank_.find(f.file);
    return it != rank_.end() ? it->second : rank_.size();
  };
  std::stable_sort(out.begin(), out.end(), [&](const Finding& a, const Finding& b) {
    return std::forward_as_tuple(rank(a), a.file, a.tensor) <
           std::forward_as_tuple(rank(b), b.file, b.tensor);
  });
  return out;
}

}  // namespace shardwise::verify
