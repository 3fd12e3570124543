// The gathering of new tensors from old pieces, through staging buffers of several sizes: rows
// larger than a chunk (streamed part by part), rows read one by one (an old row larger than the
// scratch buffer), and many rows per read. Expected bytes: a direct conversion at the new mp. The
// old pieces read whole are hashed on every one of these paths: a wrong or missing byte fed to the
// hash would fail the run, and a damaged byte anywhere in a piece is found.
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <shardwise/core/error.hpp>
#include <shardwise/reshard/reshard.hpp>

#include "reshard/gather.hpp"

#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

void convert(const fs::path& in, const fs::path& out, int mp) {
  const auto r = run_command({shardwise_binary(), "convert", "-i", in.string(), "-o", out.string(),
                              "--n-experts", "8", "-m", std::to_string(mp), "-q"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

TEST_CASE("gather: every staging size writes the bytes of a direct conversion") {
  TempDir dir;
  REQUIRE(run_command({tools_dir() + "/gen_checkpoint", "--out", (dir / "in").string(), "--config", "tiny",
                       "--layers", "1", "--experts", "8"})
              .exit_code == 0);
  for (const int mp : {1, 2, 4, 8}) convert(dir / "in", dir / ("mp" + std::to_string(mp)), mp);
  for (const std::size_t piece_bytes : {std::size_t{64}, std::size_t{256}, std::size_t{1} << 20}) {
    for (const auto& [a, b] : std::vector<std::pair<int, int>>{{1, 8}, {8, 1}, {2, 4}, {4, 2}}) {
      INFO("mp " << a << " -> " << b << ", staging " << piece_bytes);
      const reshard::ReshardPlan plan = reshard::plan_reshard((dir / ("mp" + std::to_string(a))).string(), b);
      const fs::path out =
          dir / ("out-" + std::to_string(piece_bytes) + "-" + std::to_string(a) + "-" + std::to_string(b));
      reshard::ReshardOptions options;
      options.run.output_dir = out.string();
      options.run.progress = output::ProgressMode::quiet;
      options.piece_bytes = piece_bytes;
      options.run.threads = 2;
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

TEST_CASE("gather: merging reads every old piece whole, splitting only the copies it moves whole") {
  TempDir dir;
  REQUIRE(run_command({tools_dir() + "/gen_checkpoint", "--out", (dir / "in").string(), "--config", "tiny",
                       "--layers", "1", "--experts", "8"})
              .exit_code == 0);
  for (const int mp : {2, 4}) convert(dir / "in", dir / ("mp" + std::to_string(mp)), mp);
  for (const auto& [a, b] : std::vector<std::pair<int, int>>{{4, 2}, {4, 1}, {2, 4}, {4, 4}}) {
    INFO("mp " << a << " -> " << b);
    const reshard::ReshardPlan plan = reshard::plan_reshard((dir / ("mp" + std::to_string(a))).string(), b);
    std::size_t split_pieces = 0;
    for (const reshard::NewFile& file : plan.outputs) {
      for (const reshard::NewTensor& t : file.tensors) {
        const reshard::LogicalTensor& logical = plan.logical[t.logical];
        const bool split = logical.placement.kind == plan::Placement::Kind::split;
        const std::vector<reshard::PieceRead> reads = reshard::pieces_read(plan, t);
        // A split tensor's new range covers old ranges whole when the new mp does not exceed the
        // old one (each old rank's range is a/b-th of a new one), a part of one otherwise.
        REQUIRE(reads.size() == (split && a > b ? static_cast<std::size_t>(a / b) : 1));
        for (const reshard::PieceRead& read : reads) CHECK(read.whole == (!split || a >= b));
        if (split) split_pieces += reads.size();
      }
    }
    CHECK(split_pieces > 0);
  }
}

TEST_CASE("gather: a flipped byte in a piece read whole is found at every staging size") {
  TempDir dir;
  REQUIRE(run_command({tools_dir() + "/gen_checkpoint", "--out", (dir / "in").string(), "--config", "tiny",
                       "--layers", "1", "--experts", "8"})
              .exit_code == 0);
  convert(dir / "in", dir / "mp4", 4);
  // The largest split piece of old rank 2 whose rows interleave when merged (split on dim 1).
  const reshard::ReshardPlan sound = reshard::plan_reshard((dir / "mp4").string(), 2);
  const reshard::Piece* target = nullptr;
  std::string name;
  for (const reshard::LogicalTensor& t : sound.logical) {
    if (t.placement.kind != plan::Placement::Kind::split || t.placement.dim != 1) continue;
    const reshard::Piece& p = t.pieces[2];
    if (target == nullptr || p.bytes > target->bytes) {
      target = &p;
      name = t.name;
    }
  }
  REQUIRE(target != nullptr);
  const fs::path file = dir / "mp4" / "model2-mp4.safetensors";
  std::string bytes = read_file(file);
  for (const std::uint64_t at : {std::uint64_t{0}, target->bytes / 2, target->bytes - 1}) {
    for (const std::size_t piece_bytes : {std::size_t{64}, std::size_t{256}, std::size_t{1} << 20}) {
      INFO("byte " << at << " of " << name << " (" << target->bytes << " bytes), staging " << piece_bytes);
      bytes[target->offset + at] ^= 0x04;
      write_file(file, bytes);
      const reshard::ReshardPlan plan = reshard::plan_reshard((dir / "mp4").string(), 2);
      reshard::ReshardOptions options;
      options.run.output_dir =
          (dir / ("out-" + std::to_string(at) + "-" + std::to_string(piece_bytes))).string();
      options.run.progress = output::ProgressMode::quiet;
      options.piece_bytes = piece_bytes;
      options.run.threads = 2;
      CHECK_THROWS_WITH(reshard::execute_reshard(plan, options),
                        Catch::Contains("model2-mp4.safetensors: " + name + " has xxh3 ") &&
                            Catch::Contains("(1 problem)"));
      // Old rank 2 goes into new rank 1; new rank 0 is sound.
      CHECK(!fs::exists(fs::path(options.run.output_dir) / "model1-mp2.safetensors"));
      CHECK(fs::exists(fs::path(options.run.output_dir) / "model0-mp2.safetensors"));
      bytes[target->offset + at] ^= 0x04;
      write_file(file, bytes);
    }
  }
}

}  // namespace
}  // namespace shardwise::test
