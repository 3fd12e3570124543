#pragma once
// Recognising output file names of a given model-parallel size, so that `verify` can report
// model files of ours that the plan does not expect (a rank beyond mp, left over from another
// run).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/rules/name_template.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::verify {

class OutputNamePattern {
 public:
  // The rules' `output.file` template with mp fixed and the rank left free.
  static OutputNamePattern from_rules(const rules::Rules& rules, std::uint64_t mp);

  // The rank encoded in `name` when it is an output name of this mp (rank in decimal, any
  // value, the same at every place the template uses it); nullopt otherwise.
  std::optional<std::uint64_t> rank_of(std::string_view name) const;

 private:
  rules::NameTemplate names_;  // the rules' template, mp written in
};

}  // namespace shardwise::verify
