#pragma once
// Running the real binary with the fault-injection shim (tests/fault/fault_shim.cpp) preloaded.
// Header-only: the tests' glob compiles only *_test.cpp files.

#include <cstdlib>
#include <string>
#include <vector>

namespace shardwise::test {

// `argv` run through env(1) with SHARDWISE_FAULT=`spec` and the shim preloaded. In a sanitizer
// build ASan wants to come first among the loaded libraries; it is told not to insist (the shim
// forwards every call to the next definition, ASan's interceptor included). `gate`: the file a
// "gate" fault waits on (SHARDWISE_FAULT_GATE).
inline std::vector<std::string> with_fault(const std::string& spec, const std::vector<std::string>& argv,
                                           const std::string& gate = {}) {
  const char* asan = std::getenv("ASAN_OPTIONS");
  std::vector<std::string> command = {
      "/usr/bin/env",
      std::string("LD_PRELOAD=") + SHARDWISE_FAULT_SHIM,
      "SHARDWISE_FAULT=" + spec,
      "ASAN_OPTIONS=" + (asan != nullptr && *asan != '\0' ? std::string(asan) + ":" : std::string()) +
          "verify_asan_link_order=0",
  };
  if (!gate.empty()) command.push_back("SHARDWISE_FAULT_GATE=" + gate);
  command.insert(command.end(), argv.begin(), argv.end());
  return command;
}

}  // namespace shardwise::test
