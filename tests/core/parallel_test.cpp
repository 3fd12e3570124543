// run_beside: two halves of a job on two threads, with the errors a serial run would report first.
#include <shardwise/core/parallel.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace shardwise {
namespace {

TEST_CASE("run_beside runs both halves, the first on the calling thread") {
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id here_on;
  std::atomic<int> there_ran{0};
  run_beside([&] { here_on = std::this_thread::get_id(); }, [&] { ++there_ran; });
  CHECK(here_on == caller);
  CHECK(there_ran == 1);
}

TEST_CASE("run_beside rethrows the first half's error before the second's, as a serial run would") {
  const auto fails = [](const char* what) { return [what] { throw std::runtime_error(what); }; };
  const auto nothing = [] {};
  CHECK_THROWS_WITH(run_beside(fails("here"), fails("there")), "here");
  CHECK_THROWS_WITH(run_beside(nothing, fails("there")), "there");
  CHECK_THROWS_WITH(run_beside(fails("here"), nothing), "here");
  CHECK_NOTHROW(run_beside(nothing, nothing));
}

TEST_CASE("run_beside waits for the second half even when the first throws") {
  std::atomic<bool> there_done{false};
  CHECK_THROWS(run_beside([] { throw std::runtime_error("here"); },
                          [&] {
                            std::this_thread::sleep_for(std::chrono::milliseconds(20));
                            there_done = true;
                          }));
  CHECK(there_done);
}

}  // namespace
}  // namespace shardwise
