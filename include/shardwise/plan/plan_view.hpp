#pragma once
// What the plan's views share (the text and JSON outputs, and reshard's dry run): names of shapes
// and casts, the --filter matcher, and the inverse of the plan: for each source, where it went.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/plan/plan.hpp>
#include <shardwise/plan/planner.hpp>

namespace re2 {
class RE2;
}

namespace shardwise::plan::detail {

// Fast appends for the formats' hot loops (fmt's format-string parsing costs more than the work).
void append_uint(std::string& out, std::uint64_t value);
void append_shape(std::string& out, std::span<const std::uint64_t> shape);  // as st::shape_text
// The dtypes a cast or reinterpretation goes between ("F16", "BF16"); "" without one.
std::string_view cast_source_dtype(const Source& source, const PlannedTensor& t);
std::string_view cast_target_dtype(const PlannedTensor& t);
std::string_view file_name_of(std::string_view path);  // the part after the last '/'
// 1536 -> "1,536"
std::string group_digits(std::uint64_t value);
void append_grouped(std::string& out, std::uint64_t value);  // group_digits, appended
// 1536 -> "1.5 KiB"; below 1024: "512 B"
std::string human_bytes(std::uint64_t bytes);
// A dequantization's scale grid, as it is: "per tensor" (one scale), "per channel" (one per row)
// or "blocks of 64x32" (never kWholeBlock's number).
std::string scale_grid_text(const Companion& companion);
// A packed dequantization's packing: "gptq 4-bit, group 128".
std::string packing_text(const Companion& companion);
// The input tensors a dequantize_packed of `codes` reads, in the order its members are named:
// the codes, the zeros, the scales and the group index (when there is one).
std::vector<std::size_t> packed_members(const Companion& companion, std::size_t codes);

// A rule label ("table[wq] (rules.yaml:12:5)") split into the rule's name ("table[wq]") and where
// it is written ("rules.yaml:12:5"; empty when the label has no location).
struct RuleLabelParts {
  std::string_view name;
  std::string_view location;
};
RuleLabelParts split_rule_label(std::string_view label);

// The --filter of both formats: an RE2 pattern searched (unanchored) in a source or output name.
class RowFilter {
 public:
  // Throws Error(usage) for an invalid pattern.
  explicit RowFilter(const std::optional<std::string>& pattern);
  ~RowFilter();
  RowFilter(const RowFilter&) = delete;
  RowFilter& operator=(const RowFilter&) = delete;
  bool active() const noexcept { return re_ != nullptr; }
  bool matches(std::string_view name) const;
  bool matches(std::string_view a, std::string_view b) const { return matches(a) || (a != b && matches(b)); }

 private:
  std::unique_ptr<re2::RE2> re_;
};

// The input's tensors, each once, as the plan's `input:` line counts them: its sources (less the
// chunks after the first of an unfused tensor) and skipped tensors, less the sources a transform
// read by input name (`lookup: input`) although the rules placed or skipped that tensor already.
std::size_t input_tensor_count(const Plan& plan);
class PlacementIndex;
std::size_t input_tensor_count(const Plan& plan, const PlacementIndex& index);  // the same, sooner

// Every criterion of a PlanFilter, checked once against the plan (a rank beyond mp or a rule that
// decided nothing is a usage error naming what exists), then applied row by row.
class RowSelection {
 public:
  RowSelection(const Plan& plan, const PlanFilter& filter);
  bool active() const noexcept { return names_.active() || rank_ || !rules_.empty(); }
  const std::optional<std::uint64_t>& rank() const noexcept { return rank_; }
  // A placed tensor on `rank`, from `source`.
  bool shows(std::uint64_t rank, const PlannedTensor& tensor, const Source& source) const {
    return (!rank_ || *rank_ == rank) && (rules_.empty() || rules_[tensor.rule]) &&
           names_.matches(source.name, tensor.name);
  }
  bool shows(const Skipped& skipped) const;
  // Which criteria are in force, for the count lines: "--rank 3 --rule table[wq]".
  std::string describe(const PlanFilter& filter) const;

 private:
  RowFilter names_;
  std::optional<std::uint64_t> rank_;
  std::vector<bool> rules_;                      // by rule index: chosen by --rule; empty: any
  std::vector<std::string_view> chosen_labels_;  // the chosen labels, for skipped tensors
};

// The formats append to `text` and call flush_if_full() after each row: the text goes to the sink
// a MiB at a time. finish() hands over the rest.
class ChunkedText {
 public:
  explicit ChunkedText(const TextSink& sink) : sink_(sink) { text.reserve(kChunk + kChunk / 4); }
  ChunkedText(const ChunkedText&) = delete;
  ChunkedText& operator=(const ChunkedText&) = delete;

  std::string text;
  void flush_if_full() {
    if (text.size() >= kChunk) finish();
  }
  void finish() {
    if (!text.empty()) sink_(text);
    text.clear();
  }
  const TextSink& sink() const noexcept { return sink_; }

 private:
  static constexpr std::size_t kChunk = std::size_t{1} << 20;
  const TextSink& sink_;
};

// A long run of rows in `count` pieces (a few 1,000 rows each): format(k, text) appends piece k to
// an empty `text`, and consume(k, text) takes the pieces in order 0, 1, 2, ... on the calling thread.
// With Threads::two, the odd pieces are formatted on a second thread, each thread into buffers
// reused from piece to piece: memory stays a few pieces whatever the plan's size, and consume may
// block (a slow reader of stdout) without pieces piling up. An exception from either function stops
// both threads and is rethrown here. `format` must only read what the threads share.
enum class Threads { one, two };
using PieceFormatter = std::function<void(std::size_t piece, std::string& text)>;
using PieceConsumer = std::function<void(std::size_t piece, std::string& text)>;
void format_in_order(std::size_t count, const PieceFormatter& format, const PieceConsumer& consume,
                     Threads threads);
// Threads::two for a run of `rows` rows when it is long enough to gain from it and there is a
// second core.
Threads threads_for(std::size_t rows);

// The whole text of a writer (write_plan_text, write_plan_json) as one string.
template <class Writer>
std::string collect(Writer write) {
  std::string all;
  write([&all](std::string_view piece) { all += piece; });
  return all;
}

struct Placement {
  std::uint64_t rank = 0;
  const PlannedTensor* tensor = nullptr;
  // A part of a fused output (rules `fuse:`): that output, and the part's position in it.
  const PlannedTensor* fused = nullptr;
  std::size_t part = 0;
};

// For each source, its output tensors in rank order. A fused output is listed under the sources
// of its parts, each as that part (Placement::fused says of what), not under its own.
class PlacementIndex {
 public:
  explicit PlacementIndex(const Plan& plan);
  std::span<const Placement> of(std::size_t source) const {
    return {placements_.data() + begin_[source], placements_.data() + begin_[source + 1]};
  }

 private:
  std::vector<std::size_t> begin_;  // sources + 1 offsets into placements_
  std::vector<Placement> placements_;
};

}  // namespace shardwise::plan::detail
