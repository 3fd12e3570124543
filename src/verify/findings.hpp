#pragma once
// Collecting mismatches from several phases and threads, then listing them in a stable order.
// Internal to verify.

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <shardwise/verify/verifier.hpp>

namespace shardwise::verify {

class Findings {
 public:
  // `file_order`: the files to list first, in this order (planned outputs by rank, side files);
  // any other file follows, by name.
  explicit Findings(std::vector<std::string> file_order);

  // Thread-safe.
  void add(const std::string& file, const std::string& tensor, std::string what);
  void add(const std::string& file, std::string what) { add(file, "", std::move(what)); }

  // Whether anything was reported about `file` (any tensor), or about one tensor of it.
  bool has(const std::string& file) const;
  bool has(const std::string& file, const std::string& tensor) const;

  // Every finding: by file (see file_order), then file-level findings before tensors, tensors by
  // name, then in the order added.
  std::vector<Finding> sorted() const;

 private:
  std::map<std::string, std::size_t> rank_;
  mutable std::mutex mutex_;
  std::vector<Finding> findings_;
  std::set<std::pair<std::string, std::string>> seen_;  // (file, tensor) with a finding
  std::set<std::string> files_;                         // files with a finding
};

}  // namespace shardwise::verify
