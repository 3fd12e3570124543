#include <shardwise/plan/plan.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/printable.hpp>

namespace shardwise::plan {

std::vector<std::string> extra_file_names(const Plan& plan) {
  std::vector<std::string> names = plan.side_files;
  for (const GeneratedFile& file : plan.generated_files) names.push_back(file.file);
  return names;
}

std::string outputs_heading(const Plan& plan) {
  if (plan.naming == OutputNaming::mirror) {
    return fmt::format("{} file{} mirroring the input's", plan.outputs.size(),
                       plan.outputs.size() == 1 ? "" : "s");
  }
  if (plan.naming == OutputNaming::hf) {
    return plan.max_shard_size == 0
               ? fmt::format("{} file{} in Hugging Face's layout, mirroring the input's", plan.outputs.size(),
                             plan.outputs.size() == 1 ? "" : "s")
               : fmt::format("{} file{} in Hugging Face's layout (max shard size {} bytes)", plan.outputs.size(),
                             plan.outputs.size() == 1 ? "" : "s", plan.max_shard_size);
  }
  return fmt::format("{} ranks (mp={})", plan.model_parallel, plan.model_parallel);
}

std::string param_value_text(const Plan& plan, const std::string& name, std::uint64_t value) {
  const auto choices = plan.param_choices.find(name);
  if (choices != plan.param_choices.end() && value < choices->second.size()) return choices->second[value];
  return std::to_string(value);
}

std::vector<std::string> param_assignments(const Plan& plan) {
  std::vector<std::string> shown;
  shown.reserve(plan.params.size());
  for (const auto& [name, value] : plan.params)
    shown.push_back(name + "=" + param_value_text(plan, name, value));
  return shown;
}

std::vector<std::string> param_source_lines(const Plan& plan) {
  std::vector<std::string> lines;
  for (const auto& [name, source] : plan.param_sources) {
    const auto value = plan.params.find(name);
    if (value == plan.params.end()) continue;
    lines.push_back(rules::describe_param_source(name, param_value_text(plan, name, value->second), source));
  }
  return lines;
}

std::string extra_files_text(const Plan& plan) {
  std::vector<std::string> names = plan.side_files;
  for (const GeneratedFile& file : plan.generated_files) names.push_back(file.file + " (" + file.how + ")");
  for (const std::string& file : plan.dropped_side_files) names.push_back(file + " (not copied)");
  return names.empty() ? std::string("none") : printable(fmt::format("{}", fmt::join(names, ", ")));
}

}  // namespace shardwise::plan
