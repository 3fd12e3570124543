// Names from untrusted text must name a file in its folder; files of an input folder must not lead
// out of it (a Hugging Face cache's snapshot -> blobs links aside); files the tool reads or writes
// by path must be regular files, never followed through a link in an output folder.
#include <shardwise/core/paths.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <shardwise/core/error.hpp>

#include <shardwise/core/io.hpp>
#include "support/support.hpp"

namespace shardwise {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::TempDir;
using test::write_file;

TEST_CASE("file_name_problem: a single name in the folder, or why not") {
  struct Case {
    std::string name;
    std::string problem;
  };
  const Case cases[] = {
      {"tokenizer.json", ""},
      {"model0-mp8.safetensors", ""},
      {".hidden", ""},
      {"...", ""},
      {"a\\b", ""},  // a legal name on Linux, not a path
      {"", "an empty name"},
      {".", "'.', a folder"},
      {"..", "'..', a folder"},
      {"../planted.txt", "a path, not a file name"},
      {"sub/file", "a path, not a file name"},
      {"/etc/passwd", "a path, not a file name"},
      {"file/", "a path, not a file name"},
      {std::string("model.safetensors\0/../x", 23), "a name with a NUL byte"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    CHECK(file_name_problem(c.name) == c.problem);
    CHECK(is_single_file_name(c.name) == c.problem.empty());
  }
}

TEST_CASE("outside_target: links that stay inside pass, links that lead out are named") {
  TempDir dir;
  const fs::path folder = dir / "in";
  fs::create_directories(folder / "sub");
  write_file(folder / "plain.json", "{}");
  write_file(folder / "sub" / "deep.json", "{}");
  write_file(dir / "private.txt", "secret");
  fs::create_symlink("plain.json", folder / "inside.json");
  fs::create_symlink("sub/deep.json", folder / "inside_sub.json");
  fs::create_symlink("../private.txt", folder / "outside.json");
  fs::create_symlink((dir / "private.txt").string(), folder / "absolute.json");
  fs::create_symlink("outside.json", folder / "chain.json");  // a link to a link that leads out
  fs::create_symlink("missing.json", folder / "dangling.json");

  const std::string in = folder.string();
  const std::string outside = fs::canonical(dir / "private.txt").string();
  CHECK_FALSE(outside_target(in, "plain.json"));
  CHECK_FALSE(outside_target(in, "inside.json"));
  CHECK_FALSE(outside_target(in, "inside_sub.json"));
  CHECK_FALSE(outside_target(in, "dangling.json"));  // missing: opening it says so
  CHECK(outside_target(in, "outside.json") == outside);
  CHECK(outside_target(in, "absolute.json") == outside);
  CHECK(outside_target(in, "chain.json") == outside);

  CHECK_NOTHROW(check_inside_folder(in, "inside.json", OutsideLinks::refuse));
  CHECK_NOTHROW(check_inside_folder(in, "outside.json", OutsideLinks::allow));
  try {
    check_inside_folder(in, "outside.json", OutsideLinks::refuse);
    FAIL("a link out of the folder was accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::input);
    CHECK(std::string(e.what()) ==
          (folder / "outside.json").string() + ": leads outside its folder " + in + " (to " + outside +
              "): shardwise reads nothing outside the folders it is given; copy the file "
              "into the folder, or pass --allow-outside-links");
  }
}

TEST_CASE("outside_target: the file open on a descriptor is the one checked") {
  TempDir dir;
  const fs::path folder = dir / "in";
  fs::create_directories(folder);
  write_file(folder / "tokenizer.json", "{}");
  write_file(dir / "private.txt", "secret");
  const int inside = ::open((folder / "tokenizer.json").c_str(), O_RDONLY | O_CLOEXEC);
  const int outside = ::open((dir / "private.txt").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(inside >= 0);
  REQUIRE(outside >= 0);
  // The path names a file inside, but what was opened (say, before a swap) is outside.
  CHECK(outside_target(folder.string(), "tokenizer.json", outside) ==
        fs::canonical(dir / "private.txt").string());
  CHECK_FALSE(outside_target(folder.string(), "tokenizer.json", inside));
  ::close(inside);
  ::close(outside);
}

TEST_CASE("outside_target: a Hugging Face cache's snapshot may lead to its own blobs, nowhere else") {
  TempDir dir;
  const fs::path repo = dir / "hub" / "models--org--name";
  const fs::path snapshot = repo / "snapshots" / "0123abcd";
  fs::create_directories(snapshot);
  fs::create_directories(repo / "blobs");
  fs::create_directories(dir / "hub" / "models--other--name" / "blobs");
  write_file(repo / "blobs" / "aaaa", "{}");
  write_file(dir / "hub" / "models--other--name" / "blobs" / "bbbb", "{}");
  fs::create_directories(repo / "blobs" / "nested");
  write_file(repo / "blobs" / "nested" / "cccc", "{}");
  fs::create_symlink("../../blobs/aaaa", snapshot / "tokenizer.json");
  fs::create_symlink("../../../models--other--name/blobs/bbbb", snapshot / "other.json");
  fs::create_symlink("../../blobs/nested/cccc", snapshot / "nested.json");

  const std::string in = snapshot.string();
  CHECK_FALSE(outside_target(in, "tokenizer.json"));
  CHECK(outside_target(in, "other.json"));   // another repository's blobs
  CHECK(outside_target(in, "nested.json"));  // not a blob: blobs/ holds files only

  // The same layout without `snapshots/` is no cache: its links lead out.
  const fs::path not_cache = dir / "models" / "x" / "rev";
  fs::create_directories(not_cache);
  fs::create_directories(dir / "models" / "blobs");
  write_file(dir / "models" / "blobs" / "dddd", "{}");
  fs::create_symlink("../../blobs/dddd", not_cache / "tokenizer.json");
  CHECK(outside_target(not_cache.string(), "tokenizer.json"));
}

TEST_CASE("open_regular_file: a FIFO, a folder or a device is refused without blocking") {
  TempDir dir;
  const fs::path fifo = dir / "rules.yaml";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // no writer: an ordinary open would wait for one
  try {
    io::read_regular_file(fifo.string(), 1 << 20, ErrorKind::rules, "rules file");
    FAIL("a FIFO was read");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::rules);
    CHECK(std::string(e.what()) ==
          fifo.string() + ": a FIFO (named pipe), not a regular file: refused without reading it");
  }
  CHECK_THROWS_WITH(io::ReadOnlyFile(dir.str()),
                    dir.str() + ": a folder, not a regular file: refused without reading it");
  CHECK_THROWS_WITH(io::ReadOnlyFile("/dev/zero"),
                    "/dev/zero: a device, not a regular file: refused without reading it");
  CHECK_THROWS_WITH(io::read_regular_file((dir / "absent").string(), 10, ErrorKind::rules, "rules file"),
                    "cannot open rules file " + (dir / "absent").string() + ": No such file or directory");
  write_file(dir / "big", std::string(11, 'x'));
  CHECK_THROWS_WITH(io::read_regular_file((dir / "big").string(), 10, ErrorKind::rules, "rules file"),
                    (dir / "big").string() + ": rules file is larger than 10 bytes");
  CHECK(io::read_regular_file((dir / "big").string(), 11, ErrorKind::rules, "rules file") ==
        std::string(11, 'x'));
}

TEST_CASE("open_in_output_folder: never through a link, never anything but a regular file") {
  TempDir dir;
  const fs::path out = dir / "out";
  fs::create_directories(out);
  write_file(dir / "victim.txt", std::string(200, 'v'));
  fs::create_symlink("../victim.txt", out / ".shardwise.lock");
  fs::create_symlink("../created.txt", out / ".tokenizer.json.partial");
  REQUIRE(::mkfifo((out / "fifo").c_str(), 0600) == 0);

  CHECK_THROWS_WITH(
      io::open_in_output_folder((out / ".shardwise.lock").string(), O_RDWR | O_CREAT, 0644, "the lock file"),
      "the lock file " + (out / ".shardwise.lock").string() +
          " is a symbolic link: shardwise writes no file through a link (it could lead outside the "
          "output folder); remove it");
  CHECK(read_file(dir / "victim.txt") == std::string(200, 'v'));
  // A dangling link: nothing is created where it points.
  CHECK_THROWS_AS(io::open_in_output_folder((out / ".tokenizer.json.partial").string(),
                                            O_WRONLY | O_CREAT | O_TRUNC, 0644, "the temporary file"),
                  Error);
  CHECK_FALSE(fs::exists(dir / "created.txt"));
  CHECK_THROWS_WITH(io::open_in_output_folder((out / "fifo").string(), O_WRONLY | O_CREAT | O_TRUNC, 0644,
                                              "the temporary file"),
                    "the temporary file " + (out / "fifo").string() + " is not a regular file: remove it");
  const int fd =
      io::open_in_output_folder((out / "new").string(), O_WRONLY | O_CREAT | O_TRUNC, 0644, "a file");
  CHECK(fd >= 0);
  ::close(fd);
}

}  // namespace
}  // namespace shardwise
