// The gathering of new tensors from old pieces, through staging buffers of several sizes: rows
// larger than a chunk (streamed part by part), rows read one by one (an old row larger than the
// scratch buffer), and many rows per read. Expected bytes: a direct conversion at the new mp.
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <shardwise/reshard/reshard.hpp>

#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

void convert(const fs::path& in, const fs::path& out, int mp) {
  const auto r = run_command({shardwise_binary(), "convert", "-i", in.string(), "-o", out.string(), "--n-experts", "8",
                              "-m", std::to_string(mp), "-q"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

TEST_CASE("gather: every staging size writes the bytes of a direct conversion") {
  TempDir dir;
  REQUIRE(run_command({tools_dir() + "/gen_checkpoint", "--out", (dir / "in").string(), "--config", "tiny", "--layers",
                       "1", "--experts", "8"})
              .exit_code == 0);
  for (const int mp : {1, 2, 4, 8}) convert(dir / "in", dir / ("mp" + std::to_string(mp)), mp);
  for (const std::size_t piece_bytes : {std::size_t{64}, std::size_t{256}, std::size_t{1} << 20}) {
    for (const auto& [a, b] : std::vector<std::pair<int, int>>{{1, 8}, {8, 1}, {2, 4}, {4, 2}}) {
      INFO("mp " << a << " -> " << b << ", staging " << piece_bytes);
      const reshard::ReshardPlan plan = reshard::plan_reshard((dir / ("mp" + std::to_string(a))).string(), b);
      const fs::path out = dir / ("out-" + std::to_string(piece_bytes) + "-" + std::to_string(a) + "-" + std::to_string(b));
      reshard::ReshardOptions options;
      options.output_dir = out.string();
      options.progress = convert::ProgressMode::quiet;
      options.piece_bytes = piece_bytes;
      options.threads = 2;
      const reshard::ReshardSummary summary = reshard::execute_reshard(plan, options);
      CHECK(summary.files == static_cast<std::size_t>(b));
      const fs::path expected = dir / ("mp" + std::to_string(b));
      for (const auto& entry : fs::directory_iterator(expected)) {
        const std::string name = entry.path().filename().string();
        if (name == "shardwise-manifest.json") continue;
        INFO(name);
        CHECK(read_file(entry.path()) == read_file(out / name));
      }
    }
  }
}

}  // namespace
}  // namespace shardwise::test
