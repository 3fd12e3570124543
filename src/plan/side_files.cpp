#include "plan/side_files.hpp"

#include <filesystem>
#include <set>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/io.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/safetensors/hf_config.hpp>

namespace shardwise::plan::detail {

namespace {

// The dtypes the plan's dequantising casts write.
std::set<st::DType> dequantized_dtypes(const Plan& plan) {
  std::set<st::DType> dtypes;
  for (const OutputFile& out : plan.outputs) {
    for (const PlannedTensor& t : out.tensors) {
      if (dequantizes(t.cast)) dtypes.insert(t.dtype);
    }
  }
  return dtypes;
}

std::string dtype_words(const std::set<st::DType>& dtypes) {
  std::vector<std::string_view> names;
  for (const st::DType dtype : dtypes) names.push_back(st::dtype_name(dtype));
  return fmt::format("{}", fmt::join(names, " and "));
}

void add_dequantized_config(Plan& plan, const std::string& name, Diagnostics& problems) {
  const std::set<st::DType> dtypes = dequantized_dtypes(plan);
  if (dtypes.size() != 1) {
    problems.add(fmt::format(
        "{}: the rules write it without its quantisation ({{{}: dequantized}}), but the plan dequantises {}",
        name, name, dtypes.empty() ? std::string("no tensor") : "to " + dtype_words(dtypes) + ": which is the model's dtype?"));
    return;
  }
  const st::DType dtype = *dtypes.begin();
  if (dtype != st::DType::BF16 && dtype != st::DType::F16) {
    problems.add(fmt::format("{}: the plan dequantises to {}, which config.json cannot name (bfloat16 or float16)",
                             name, st::dtype_name(dtype)));
    return;
  }
  const std::string path = (std::filesystem::path(plan.input_root) / name).string();
  try {
    check_inside_folder(plan.input_root, name, plan.outside_links);
    const io::ReadOnlyFile file(path);
    constexpr std::uint64_t kMaxConfigBytes = 64u << 20;  // a config.json is a few KB
    if (file.size() > kMaxConfigBytes) {
      throw Error(ErrorKind::input, fmt::format("{}: larger than {} bytes: not a config.json", path, kMaxConfigBytes));
    }
    std::string text(static_cast<std::size_t>(file.size()), '\0');
    io::pread_exact(file.fd(), path, 0, std::as_writable_bytes(std::span(text)));
    plan.generated_files.push_back(GeneratedFile{
        name, st::dequantized_config_json(text, dtype, path), name, identity_of_open_file(file.fd(), path),
        fmt::format("without its quantisation, dtype {}", dtype == st::DType::BF16 ? "bfloat16" : "float16")});
  } catch (const Error& e) {
    problems.add(e.what());
  }
}

}  // namespace

void apply_side_file_rules(Plan& plan, const rules::Rules& rules, Diagnostics& problems) {
  for (const rules::SideFileRule& rule : rules.side_file_rules()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(std::filesystem::path(plan.input_root) / rule.name, ec)) continue;
    if (rule.action == rules::SideFileRule::Action::drop) {
      plan.dropped_side_files.push_back(rule.name);
    } else {
      add_dequantized_config(plan, rule.name, problems);
    }
  }
}

}  // namespace shardwise::plan::detail
