#include <shardwise/plan/plan.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace shardwise::plan {

std::vector<std::string> extra_file_names(const Plan& plan) {
  std::vector<std::string> names = plan.side_files;
  for (const GeneratedFile& file : plan.generated_files) names.push_back(file.file);
  return names;
}

std::string outputs_heading(const Plan& plan) {
  if (plan.naming == OutputNaming::mirror) {
    return fmt::format("{} file{} mirroring the input's", plan.outputs.size(), plan.outputs.size() == 1 ? "" : "s");
  }
  return fmt::format("{} ranks (mp={})", plan.model_parallel, plan.model_parallel);
}

std::string extra_files_text(const Plan& plan) {
  std::vector<std::string> names = plan.side_files;
  for (const GeneratedFile& file : plan.generated_files) names.push_back(file.file + " (rewritten)");
  return names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace shardwise::plan
