// The cleanup registry: a child process registers temporaries and is killed by a signal; the
// parent checks what is left on disk and how the child died.

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include <catch2/catch.hpp>

#include "support/support.hpp"

using namespace shardwise;
namespace fs = std::filesystem;

namespace {

struct ChildEnd {
  bool signaled = false;
  int signal = 0;
  int exit_code = -1;
};

// Runs `body` in a forked child (so the handlers never touch the test runner) and waits for it.
ChildEnd run_in_child(const std::function<void()>& body) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    try {
      body();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);  // reached only when the signal did not kill us
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  ChildEnd end;
  end.signaled = WIFSIGNALED(status);
  if (end.signaled) end.signal = WTERMSIG(status);
  if (WIFEXITED(status)) end.exit_code = WEXITSTATUS(status);
  return end;
}

}  // namespace

TEST_CASE("a terminating signal removes registered temporaries and kills with that signal") {
  for (int signal_number : {SIGTERM, SIGINT}) {
    INFO("signal " << signal_number);
    test::TempDir dir;
    const fs::path registered = dir / ".a.partial";
    const fs::path unregistered = dir / ".b.partial";
    const fs::path never_registered = dir / "kept";
    for (const auto& p : {registered, unregistered, never_registered}) test::write_file(p, "x");

    const ChildEnd end = run_in_child([&] {
      install_cleanup_handlers();
      install_cleanup_handlers();  // idempotent
      register_temp_file(registered.string());
      register_temp_file(unregistered.string());
      unregister_temp_file(unregistered.string());
      ::raise(signal_number);
    });

    CHECK(end.signaled);
    CHECK(end.signal == signal_number);
    CHECK_FALSE(fs::exists(registered));
    CHECK(fs::exists(unregistered));
    CHECK(fs::exists(never_registered));
  }
}

TEST_CASE("a registered path whose file is already gone does not disturb the handler") {
  test::TempDir dir;
  const fs::path gone = dir / ".gone.partial";
  const fs::path present = dir / ".present.partial";
  test::write_file(present, "x");
  const ChildEnd end = run_in_child([&] {
    install_cleanup_handlers();
    register_temp_file(gone.string());
    register_temp_file(present.string());
    ::kill(::getpid(), SIGTERM);
  });
  CHECK(end.signal == SIGTERM);
  CHECK_FALSE(fs::exists(present));
}

TEST_CASE("slots are reused after unregistering") {
  // More registrations than the registry has slots, each undone: none may run out.
  const ChildEnd end = run_in_child([] {
    for (int i = 0; i < 10000; ++i) {
      const std::string path = "/nonexistent/shardwise-" + std::to_string(i);
      register_temp_file(path);
      unregister_temp_file(path);
    }
  });
  CHECK(end.exit_code == 0);
}

TEST_CASE("a full registry refuses with an error, not a crash") {
  const ChildEnd end = run_in_child([] {
    for (int i = 0; i < 256; ++i) register_temp_file("/nonexistent/shardwise-" + std::to_string(i));
    try {
      register_temp_file("/nonexistent/one-too-many");
    } catch (const Error& e) {
      const bool named = std::string(e.what()) ==
                         "cannot register temporary file /nonexistent/one-too-many: "
                         "256 temporary files are already open";
      ::_exit(named ? 7 : 8);
    }
  });
  CHECK(end.exit_code == 7);
}

TEST_CASE("register_temp_file refuses paths it cannot hold") {
  CHECK_THROWS_AS(register_temp_file(""), Error);
  CHECK_THROWS_WITH(register_temp_file(std::string(5000, 'a')),
                    Catch::Matchers::Contains("longer than 4095 bytes"));
}

TEST_CASE("interrupted() is false until a signal arrives") { CHECK_FALSE(interrupted()); }
