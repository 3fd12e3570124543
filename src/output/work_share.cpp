#include <shardwise/output/work_share.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <optional>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

namespace shardwise::output {

namespace {

std::optional<std::uint64_t> parse_number(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

[[noreturn]] void bad_list(std::string_view text, const std::string& why) {
  throw Error(ErrorKind::usage, fmt::format("--ranks {}: {}", text, why));
}

// One item of a rank list: "6" or "0-3", as [first, last].
std::pair<std::uint64_t, std::uint64_t> parse_item(std::string_view list, std::string_view item) {
  if (item.empty()) bad_list(list, "empty item (expected ranks like 1,3 or 0-3,6)");
  const auto dash = item.find('-');
  const std::string_view first_text = item.substr(0, dash);
  const std::string_view last_text = dash == std::string_view::npos ? item : item.substr(dash + 1);
  const auto first = parse_number(first_text);
  const auto last = parse_number(last_text);
  if (!first || !last) {
    bad_list(list,
             fmt::format("'{}' is not a rank or a range of ranks (expected ranks like 1,3 or 0-3,6)", item));
  }
  if (*last < *first)
    bad_list(list, fmt::format("the range {} is reversed (write {}-{})", item, *last, *first));
  return {*first, *last};
}

}  // namespace

std::vector<std::uint64_t> parse_rank_list(std::string_view text, std::uint64_t model_parallel) {
  if (text.empty()) bad_list(text, "no ranks given (expected ranks like 1,3 or 0-3,6)");
  std::vector<std::uint64_t> ranks;
  for (std::size_t start = 0;;) {
    const auto comma = text.find(',', start);
    const std::string_view item =
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    const auto [first, last] = parse_item(text, item);
    if (last >= model_parallel) {
      bad_list(text, fmt::format("rank {} is out of range (model parallel {}: ranks 0-{})", last,
                                 model_parallel, model_parallel - 1));
    }
    for (std::uint64_t r = first; r <= last; ++r) ranks.push_back(r);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  return ranks;
}

std::string format_rank_list(std::span<const std::uint64_t> ranks) {
  if (ranks.empty()) return "none";
  std::string text;
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!text.empty()) text += ',';
    text += j == i ? fmt::format("{}", ranks[i]) : fmt::format("{}-{}", ranks[i], ranks[j]);
    i = j + 1;
  }
  return text;
}

Launch launch_from_environment(const EnvLookup& lookup) {
  for (const auto& [index_name, count_name] : kLaunchVariables) {
    const char* index_text = lookup(index_name);
    const char* count_text = lookup(count_name);
    if (index_text == nullptr || count_text == nullptr) continue;
    const std::string source = fmt::format("{}/{}", index_name, count_name);
    const auto index = parse_number(index_text);
    const auto count = parse_number(count_text);
    if (!index || !count) {
      throw Error(ErrorKind::usage,
                  fmt::format("--distributed: {}={} and {}={} are not both non-negative integers", index_name,
                              index_text, count_name, count_text));
    }
    if (*index >= *count) {
      throw Error(ErrorKind::usage, fmt::format("--distributed: {}={} is not below {}={}", index_name, *index,
                                                count_name, *count));
    }
    return {*index, *count, source};
  }
  std::vector<std::string> pairs;
  for (const auto& [index_name, count_name] : kLaunchVariables)
    pairs.push_back(fmt::format("{}/{}", index_name, count_name));
  throw Error(
      ErrorKind::usage,
      fmt::format("--distributed: no launcher variables found: set one of the pairs {} (mpirun, srun and "
                  "torchrun set them)",
                  fmt::join(pairs, ", ")));
}

Launch launch_from_environment() {
  return launch_from_environment([](const char* name) -> const char* { return std::getenv(name); });
}

std::vector<std::uint64_t> balance_by_bytes(std::span<const std::uint64_t> weights, std::uint64_t processes) {
  std::vector<std::size_t> order(weights.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return weights[a] > weights[b]; });
  std::vector<std::uint64_t> load(std::max<std::uint64_t>(processes, 1), 0);
  std::vector<std::uint64_t> owner(weights.size(), 0);
  for (const std::size_t item : order) {
    // min_element returns the first of equals: ties go to the lower process index.
    const auto least = std::min_element(load.begin(), load.end());
    owner[item] = static_cast<std::uint64_t>(least - load.begin());
    *least += weights[item];
  }
  return owner;
}

std::vector<std::uint64_t> rank_weights(const plan::Plan& plan) {
  std::vector<std::uint64_t> weights;
  for (const plan::OutputFile& output : plan.outputs) weights.push_back(output.bytes);
  for (const std::string& name : plan.side_files) {
    const std::string path = (std::filesystem::path(plan.input_root) / name).string();
    std::error_code ec;
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw Error(ErrorKind::io, fmt::format("cannot stat {}: {}", path, ec.message()));
    if (!weights.empty()) weights[0] += size;
  }
  for (const plan::GeneratedFile& file : plan.generated_files) {
    if (!weights.empty()) weights[0] += file.content.size();
  }
  return weights;
}

std::vector<std::uint64_t> ranks_of_process(const plan::Plan& plan, const Launch& launch) {
  const std::vector<std::uint64_t> owner = balance_by_bytes(rank_weights(plan), launch.count);
  std::vector<std::uint64_t> ranks;
  for (std::size_t i = 0; i < owner.size(); ++i) {
    if (owner[i] == launch.index) ranks.push_back(plan.outputs[i].rank);
  }
  return ranks;
}

}  // namespace shardwise::output
