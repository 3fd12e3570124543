#include <shardwise/plan/plan_view.hpp>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <re2/re2.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>

#include <shardwise/rules/suggest.hpp>

namespace shardwise::plan::detail {

void append_uint(std::string& out, std::uint64_t value) {
  const fmt::format_int text(value);
  out.append(text.data(), text.size());
}

void append_shape(std::string& out, std::span<const std::uint64_t> shape) {
  out += '[';
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    append_uint(out, shape[i]);
  }
  out += ']';
}

std::string_view cast_source_dtype(const Source& source, const PlannedTensor& t) {
  return t.cast == Cast::none ? "" : st::dtype_name(source.dtype);
}

std::string_view cast_target_dtype(const PlannedTensor& t) {
  return t.cast == Cast::none ? "" : st::dtype_name(t.dtype);
}

std::string_view file_name_of(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string group_digits(std::uint64_t value) {
  std::string text;
  append_grouped(text, value);
  return text;
}

void append_grouped(std::string& out, std::uint64_t value) {
  const fmt::format_int digits(value);
  const std::size_t size = digits.size();
  std::array<char, 32> text{};                        // 20 digits and 6 commas at most
  std::size_t length = size % 3 == 0 ? 3 : size % 3;  // the digits before the first comma
  std::copy_n(digits.data(), length, text.data());
  for (std::size_t i = length; i < size; i += 3) {
    text[length++] = ',';
    std::copy_n(digits.data() + i, 3, text.data() + length);
    length += 3;
  }
  out.append(text.data(), length);
}

std::string scale_grid_text(const Companion& companion) {
  if (companion.block_rows == kWholeBlock && companion.block_cols == kWholeBlock) return "per tensor";
  if (companion.block_rows == 1 && companion.block_cols == kWholeBlock) return "per channel";
  const auto side = [](std::uint64_t n) { return n == kWholeBlock ? std::string("all") : std::to_string(n); };
  return fmt::format("blocks of {}x{}", side(companion.block_rows), side(companion.block_cols));
}

std::string packing_text(const Companion& companion) {
  const char* packing = companion.packing == Packing::awq    ? "awq"
                        : companion.packing == Packing::gptq ? "gptq"
                                                             : "gptq_v2";
  return fmt::format("{} {}-bit, group {}", packing, companion.bits, companion.group_size);
}

std::vector<std::size_t> packed_members(const Companion& companion, std::size_t codes) {
  std::vector<std::size_t> members{codes, companion.zeros, companion.source};
  if (companion.group_index != kNoSource) members.push_back(companion.group_index);
  return members;
}

std::string human_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

RuleLabelParts split_rule_label(std::string_view label) {
  // The location is the last parenthesised part: rule names are the rules file's own words.
  const auto open = label.rfind(" (");
  if (open == std::string_view::npos || !label.ends_with(')')) return {label, {}};
  return {label.substr(0, open), label.substr(open + 2, label.size() - open - 3)};
}

RowFilter::RowFilter(const std::optional<std::string>& pattern) {
  if (!pattern) return;
  RE2::Options options;
  options.set_log_errors(false);
  re_ = std::make_unique<RE2>(*pattern, options);
  if (!re_->ok()) {
    throw Error(ErrorKind::usage, fmt::format("invalid --filter pattern '{}': {}", *pattern, re_->error()));
  }
}

RowFilter::~RowFilter() = default;

bool RowFilter::matches(std::string_view name) const {
  return re_ == nullptr || RE2::PartialMatch(re2::StringPiece(name.data(), name.size()), *re_);
}

RowSelection::RowSelection(const Plan& plan, const PlanFilter& filter)
    : names_(filter.pattern), rank_(filter.rank) {
  if (rank_ && *rank_ >= plan.model_parallel) {
    throw Error(ErrorKind::usage, fmt::format("--rank {}: the plan has ranks 0 to {} (mp={})", *rank_,
                                              plan.model_parallel - 1, plan.model_parallel));
  }
  if (!filter.rule) return;
  rules_.assign(plan.rule_labels.size(), false);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < plan.rule_labels.size(); ++i) {
    const std::string& label = plan.rule_labels[i];
    const std::string_view name = split_rule_label(label).name;
    if (name == *filter.rule || label == *filter.rule) {
      rules_[i] = true;
      chosen_labels_.push_back(label);
    }
    names.emplace_back(name);
  }
  if (chosen_labels_.empty()) {
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    throw Error(
        ErrorKind::usage,
        fmt::format("--rule '{}': no tensor of this plan was decided by a rule of that name{} (rules that "
                    "decided tensors: {})",
                    *filter.rule, rules::detail::did_you_mean(*filter.rule, names), fmt::join(names, ", ")));
  }
}

bool RowSelection::shows(const Skipped& skipped) const {
  if (rank_ || !names_.matches(skipped.name)) return false;
  return rules_.empty() ||
         std::find(chosen_labels_.begin(), chosen_labels_.end(), skipped.rule) != chosen_labels_.end();
}

std::string RowSelection::describe(const PlanFilter& filter) const {
  std::string text;
  if (filter.rank) text += fmt::format(" --rank {}", *filter.rank);
  if (filter.rule) text += fmt::format(" --rule {}", *filter.rule);
  if (filter.pattern) text += fmt::format(" --filter {}", *filter.pattern);
  return text.empty() ? text : text.substr(1);
}

namespace {

// A piece the second thread formatted, until the calling thread has consumed it.
struct FormattedPiece {
  std::string text;
  bool ready = false;
};

}  // namespace

Threads threads_for(std::size_t rows) {
  // Below, the second thread's start costs more than it gains.
  constexpr std::size_t kParallelRows = 8192;
  return rows >= kParallelRows && std::thread::hardware_concurrency() >= 2 ? Threads::two : Threads::one;
}

void format_in_order(std::size_t count, const PieceFormatter& format, const PieceConsumer& consume,
                     Threads threads) {
  std::string mine;  // the even pieces
  if (count < 2 || threads == Threads::one) {
    for (std::size_t k = 0; k < count; ++k) {
      mine.clear();
      format(k, mine);
      consume(k, mine);
    }
    return;
  }
  // The odd pieces, alternately in one of two buffers: the second thread fills one while the
  // other waits to be consumed.
  std::array<FormattedPiece, 2> odd;
  std::mutex mutex;
  std::condition_variable changed;
  bool stop = false;
  std::exception_ptr failure;
  std::thread second([&] {
    try {
      for (std::size_t k = 1; k < count; k += 2) {
        FormattedPiece& piece = odd[(k / 2) % 2];
        {
          std::unique_lock lock(mutex);
          changed.wait(lock, [&] { return stop || !piece.ready; });
          if (stop) return;
        }
        piece.text.clear();
        format(k, piece.text);
        const std::lock_guard lock(mutex);
        piece.ready = true;
        changed.notify_all();
      }
    } catch (...) {
      const std::lock_guard lock(mutex);
      failure = std::current_exception();
      changed.notify_all();
    }
  });
  const auto join = [&] {
    {
      const std::lock_guard lock(mutex);
      stop = true;
    }
    changed.notify_all();
    second.join();
  };
  try {
    for (std::size_t k = 0; k < count; ++k) {
      if (k % 2 == 0) {
        mine.clear();
        format(k, mine);
        consume(k, mine);
        continue;
      }
      FormattedPiece& piece = odd[(k / 2) % 2];
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return piece.ready || failure != nullptr; });
        if (!piece.ready) std::rethrow_exception(failure);
      }
      consume(k, piece.text);
      const std::lock_guard lock(mutex);
      piece.ready = false;
      changed.notify_all();
    }
  } catch (...) {
    join();
    throw;
  }
  join();
}

PlacementIndex::PlacementIndex(const Plan& plan) : begin_(plan.sources.size() + 1, 0) {
  // Counting sort by source: ranks are visited in order, so each source's list is in rank order.
  const auto parts = [&plan](const PlannedTensor& t) -> const std::vector<PlannedTensor>* {
    return t.composite < plan.composites.size() ? &plan.composites[t.composite].parts : nullptr;
  };
  for (const OutputFile& out : plan.outputs) {
    for (const PlannedTensor& t : out.tensors) {
      if (const auto* fused = parts(t)) {
        for (const PlannedTensor& part : *fused) ++begin_[part.source + 1];
      } else {
        ++begin_[t.source + 1];
      }
    }
  }
  for (std::size_t i = 1; i < begin_.size(); ++i) begin_[i] += begin_[i - 1];
  // 7 MB at DeepSeek-V4-Pro's count: on huge pages, first touched in a few faults, not 1,900.
  placements_.reserve(begin_.back());
  advise_huge_pages(placements_.data(), begin_.back() * sizeof(Placement));
  placements_.resize(begin_.back());
  std::vector<std::size_t> next(begin_.begin(), begin_.end() - 1);
  for (const OutputFile& out : plan.outputs) {
    for (const PlannedTensor& t : out.tensors) {
      if (const auto* fused = parts(t)) {
        for (std::size_t p = 0; p < fused->size(); ++p)
          placements_[next[(*fused)[p].source]++] = Placement{out.rank, &(*fused)[p], &t, p};
      } else {
        placements_[next[t.source]++] = Placement{out.rank, &t};
      }
    }
  }
}

namespace {

// input_tensor_count, with `placed(s)` saying whether source s was placed.
template <class Placed>
std::size_t count_input_tensors(const Plan& plan, Placed placed) {
  // Read without being placed: a transform's second source (few), by name.
  std::set<std::string_view> unplaced;
  for (std::size_t s = 0; s < plan.sources.size(); ++s) {
    if (!placed(s)) unplaced.insert(plan.sources[s].name);
  }
  std::set<std::string_view> also_placed;
  if (!unplaced.empty()) {
    for (const Skipped& skipped : plan.skipped) {
      if (unplaced.count(skipped.name) != 0) also_placed.insert(skipped.name);
    }
    for (std::size_t s = 0; s < plan.sources.size(); ++s) {
      if (placed(s) && unplaced.count(plan.sources[s].name) != 0) also_placed.insert(plan.sources[s].name);
    }
  }
  std::size_t reread = 0;
  for (std::size_t s = 0; s < plan.sources.size(); ++s) {
    if (!placed(s) && also_placed.count(plan.sources[s].name) != 0) ++reread;
  }
  return plan.sources.size() - extra_chunk_sources(plan) + plan.skipped.size() - reread;
}

}  // namespace

std::size_t input_tensor_count(const Plan& plan) {
  std::vector<bool> placed(plan.sources.size(), false);
  for (const OutputFile& out : plan.outputs) {
    for (const PlannedTensor& t : out.tensors) {
      if (t.composite < plan.composites.size()) {
        for (const PlannedTensor& part : plan.composites[t.composite].parts) placed[part.source] = true;
      } else {
        placed[t.source] = true;
      }
    }
  }
  return count_input_tensors(plan, [&placed](std::size_t s) { return placed[s]; });
}

std::size_t input_tensor_count(const Plan& plan, const PlacementIndex& index) {
  return count_input_tensors(plan, [&index](std::size_t s) { return !index.of(s).empty(); });
}

}  // namespace shardwise::plan::detail
