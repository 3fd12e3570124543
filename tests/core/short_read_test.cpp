// A file that ends before the bytes its header or plan promise is an input error (exit 4), as the
// docs say of an input that changed under a run: its content is wrong, not the system's reading.
#include <shardwise/core/io.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <string>

#include <shardwise/core/error.hpp>

#include "support/support.hpp"

namespace shardwise::io {
namespace {

TEST_CASE("pread_exact: a file shorter than the read is an input error naming the path and the byte") {
  test::TempDir dir;
  const std::string path = (dir / "short.safetensors").string();
  test::write_file(path, "1234");
  const ReadOnlyFile file(path);
  std::array<std::byte, 8> buffer{};
  try {
    pread_exact(file.fd(), path, 0, buffer);
    FAIL("a short read did not throw");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    CHECK(e.exit_code() == 4);
    CHECK(std::string(e.what()) ==
          "cannot read " + path + ": the file ends before byte 8 (did it change while being read?)");
  }
}

}  // namespace
}  // namespace shardwise::io
