// TensorStream against slices and casts computed element by element in the test.
#include <shardwise/convert/tensor_stream.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>

#include "convert/fixture.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

// The input file open for reading, as the engine would have it.
struct InputFd {
  explicit InputFd(std::string p) : path_(std::move(p)), fd_(::open(path_.c_str(), O_RDONLY)) {
    REQUIRE(fd_ >= 0);
  }
  ~InputFd() { ::close(fd_); }
  InputFd(const InputFd&) = delete;
  InputFd& operator=(const InputFd&) = delete;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_;
};

struct Case {
  const char* what;
  RawTensor source;
  plan::Slice slice;
  plan::Cast cast;
  std::size_t element_size;  // of the source
};

std::string expected_bytes(const Case& c) {
  std::string bytes = c.slice.whole()
                          ? c.source.bytes
                          : slice_bytes(c.source.bytes, c.source.shape, c.element_size,
                                        static_cast<std::size_t>(c.slice.dim), c.slice.begin, c.slice.end);
  if (c.cast == plan::Cast::f16_to_bf16) return cast_f16_to_bf16(bytes);
  if (c.cast == plan::Cast::f32_to_bf16) return cast_f32_to_bf16(bytes);
  return bytes;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"whole", {"a", "I32", {6, 7}, pattern_bytes(168, 1)}, {}, plan::Cast::none, 4},
      {"dim 0", {"a", "I32", {6, 7}, pattern_bytes(168, 2)}, {0, 2, 5}, plan::Cast::none, 4},
      {"dim 1", {"a", "I32", {6, 7}, pattern_bytes(168, 3)}, {1, 3, 7}, plan::Cast::none, 4},
      {"dim 1 of 3", {"a", "U8", {3, 5, 4}, pattern_bytes(60, 4)}, {1, 1, 3}, plan::Cast::none, 1},
      {"dim 2 of 3", {"a", "I16", {3, 5, 4}, pattern_bytes(120, 5)}, {2, 3, 4}, plan::Cast::none, 2},
      {"full dim 1", {"a", "I32", {6, 7}, pattern_bytes(168, 6)}, {1, 0, 7}, plan::Cast::none, 4},
      {"empty slice", {"a", "I32", {6, 7}, pattern_bytes(168, 7)}, {1, 3, 3}, plan::Cast::none, 4},
      {"f16 whole", {"a", "F16", {64, 33}, pattern_bytes(64 * 33 * 2, 8)}, {}, plan::Cast::f16_to_bf16, 2},
      {"f16 dim 1",
       {"a", "F16", {64, 32}, pattern_bytes(64 * 32 * 2, 9)},
       {1, 8, 16},
       plan::Cast::f16_to_bf16,
       2},
      {"f32 dim 0",
       {"a", "F32", {50, 30}, pattern_bytes(50 * 30 * 4, 10)},
       {0, 10, 40},
       plan::Cast::f32_to_bf16,
       4},
      {"f32 dim 1",
       {"a", "F32", {50, 30}, pattern_bytes(50 * 30 * 4, 11)},
       {1, 5, 20},
       plan::Cast::f32_to_bf16,
       4},
      // Rows too far apart to gather: each row is read on its own.
      {"wide rows",
       {"a", "U8", {3, 40000}, pattern_bytes(120000, 12)},
       {1, 10000, 20000},
       plan::Cast::none,
       1},
      {"wide f32 rows",
       {"a", "F32", {3, 9000}, pattern_bytes(108000, 13)},
       {1, 0, 4500},
       plan::Cast::f32_to_bf16,
       4},
  };
  return all;
}

TEST_CASE("a planned tensor's bytes are its source slice, cast, whatever the read sizes") {
  TempDir dir;
  for (const Case& c : cases()) {
    plan::Plan plan;
    add_input_file(plan, dir / "in.safetensors",
                   {{"before", "U8", {3}, "xyz"}, c.source, {"after", "U8", {2}, "zz"}});
    const plan::PlannedTensor tensor = planned(plan, "out", 1, c.slice, c.cast);
    const convert::TensorStream stream(plan.sources[1], tensor);
    const std::string expected = expected_bytes(c);
    const InputFd input(plan.input_files[0]);
    CAPTURE(c.what);
    REQUIRE(stream.bytes() == expected.size());
    for (const std::size_t step :
         {std::size_t{2}, std::size_t{6}, std::size_t{64}, std::size_t{4098}, expected.size()}) {
      for (const std::size_t scratch_size : {convert::kMinScratchBytes, std::size_t{1} << 20}) {
        CAPTURE(step, scratch_size);
        std::vector<std::byte> scratch(scratch_size);
        std::string got(expected.size(), '\0');
        for (std::size_t at = 0; at < expected.size(); at += step) {
          const std::size_t n = std::min(step, expected.size() - at);
          stream.read(input.fd(), input.path(), at, std::as_writable_bytes(std::span(got)).subspan(at, n),
                      scratch);
        }
        REQUIRE(got == expected);
      }
    }
    std::vector<std::byte> buffer(4096), scratch(4096);
    CHECK(convert::expected_xxh3(stream, input.fd(), input.path(), buffer, scratch) ==
          output::xxh3(expected));
  }
}

TEST_CASE("piece bounds cover the tensor in order, keep rows together, and respect the size") {
  TempDir dir;
  for (const Case& c : cases()) {
    plan::Plan plan;
    add_input_file(plan, dir / "in.safetensors", {c.source});
    const convert::TensorStream stream(plan.sources[0], planned(plan, "out", 0, c.slice, c.cast));
    for (const std::uint64_t max_piece : {std::uint64_t{8}, std::uint64_t{100}, std::uint64_t{1} << 20}) {
      CAPTURE(c.what, max_piece);
      const std::vector<std::uint64_t> bounds = stream.piece_bounds(max_piece);
      REQUIRE(bounds.size() >= 2);
      CHECK(bounds.front() == 0);
      CHECK(bounds.back() == stream.bytes());
      for (std::size_t i = 1; i < bounds.size(); ++i) {
        CHECK(bounds[i] - bounds[i - 1] <= std::max<std::uint64_t>(8, max_piece / 8 * 8));
        if (stream.bytes() > 0) CHECK(bounds[i] > bounds[i - 1]);
        if (c.cast != plan::Cast::none) CHECK(bounds[i] % 2 == 0);
      }
    }
  }
}

TEST_CASE("a slice or cast that does not fit its source is refused, naming both tensors") {
  TempDir dir;
  plan::Plan plan;
  add_input_file(plan, dir / "in.safetensors", {{"src", "F32", {4, 6}, pattern_bytes(96, 1)}});
  struct Bad {
    plan::PlannedTensor tensor;
    std::string message;
  };
  plan::PlannedTensor past_end = planned(plan, "out", 0, {1, 0, 6});
  past_end.slice.end = 7;
  plan::PlannedTensor wrong_dim = planned(plan, "out", 0, {});
  wrong_dim.slice = {2, 0, 1};
  plan::PlannedTensor wrong_cast = planned(plan, "out", 0, {}, plan::Cast::f16_to_bf16);
  plan::PlannedTensor wrong_bytes = planned(plan, "out", 0, {});
  wrong_bytes.bytes = 95;
  plan::PlannedTensor wrong_dtype = planned(plan, "out", 0, {});
  wrong_dtype.dtype = st::DType::I32;
  const std::vector<Bad> bad = {
      {past_end, "out (from src): slice dim1[0:7] is outside the source's shape of 2 dims"},
      {wrong_dim, "out (from src): slice dim2[0:1] is outside the source's shape of 2 dims"},
      {wrong_cast,
       "out (from src): the planned cast needs a F16 source written as BF16, but the source is F32 and "
       "the output BF16"},
      {wrong_bytes, "out (from src): planned as 95 bytes, but its slice and cast give 96"},
      {wrong_dtype, "out (from src): planned as I32 without a cast, but the source is F32"},
  };
  for (const Bad& b : bad) {
    try {
      convert::TensorStream stream(plan.sources[0], b.tensor);
      FAIL("accepted: " << b.message);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::input);
      CHECK(std::string(e.what()) == b.message);
    }
  }
}

}  // namespace
}  // namespace shardwise::test
