#pragma once
// A small four-rank plan over one input file, for the tests of resuming and of partial runs:
// replicated, dim-0 sliced, cast and owned tensors, ranks of different sizes (rank r owns
// (r + 1) * 3000 bytes more), and one 16-byte side file. Header-only (see fixture.hpp).

#include <string>

#include <shardwise/convert/converter.hpp>

#include "convert/fixture.hpp"
#include "support/support.hpp"

namespace shardwise::test {

struct FourRanks {
  TempDir dir;
  plan::Plan plan;

  FourRanks() {
    std::filesystem::create_directories(dir / "in");
    std::vector<RawTensor> tensors = {
        {"shared", "BF16", {64}, pattern_bytes(128, 11)},
        {"rows", "I32", {16, 24}, pattern_bytes(16 * 24 * 4, 12)},
        {"cols", "F16", {4, 32}, pattern_bytes(4 * 32 * 2, 13)},
    };
    for (std::uint64_t r = 0; r < 4; ++r) {
      const std::uint64_t n = (r + 1) * 3000;
      tensors.push_back(
          {"owned." + std::to_string(r), "U8", {n}, pattern_bytes(n, static_cast<std::uint32_t>(20 + r))});
    }
    plan.input_root = (dir / "in").string();
    plan.model_parallel = 4;
    plan.params = {{"mp", 4}, {"n_experts", 8}};
    add_input_file(plan, dir / "in" / "model.safetensors", tensors);
    write_file(dir / "in" / "notes.txt", "side file bytes\n");
    plan.side_files = {"notes.txt"};
    for (std::uint64_t r = 0; r < 4; ++r) {
      plan::OutputFile out;
      out.rank = r;
      out.file = "model" + std::to_string(r) + "-mp4.safetensors";
      out.tensors.push_back(planned(plan, "cols", 2, {1, 8 * r, 8 * r + 8}, plan::Cast::f16_to_bf16));
      out.tensors.push_back(planned(plan, "owned." + std::to_string(r), 3 + r, {}));
      out.tensors.push_back(planned(plan, "rows", 1, {0, 4 * r, 4 * r + 4}));
      out.tensors.push_back(planned(plan, "shared", 0, {}));
      for (const plan::PlannedTensor& t : out.tensors) out.bytes += t.bytes;
      plan.outputs.push_back(std::move(out));
    }
  }

  convert::ConvertOptions options(const std::string& out) const {
    convert::ConvertOptions options;
    options.run.output_dir = (dir / out).string();
    options.run.threads = 2;
    options.run.progress = output::ProgressMode::quiet;
    options.rules = {"test-rules", 42, {}, {}};
    return options;
  }

  // A whole run into `out`.
  convert::ConvertSummary convert(const std::string& out) const {
    return convert::convert_plan(plan, options(out));
  }
};

}  // namespace shardwise::test
