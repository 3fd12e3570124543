/* On a cross build (tests/CMakeLists.txt), a host executable standing in for one the tests start:
 * it execs the emulator (EMULATOR, a list of C strings) on TARGET with its own arguments. Static,
 * so that an LD_PRELOAD meant for the emulated program (the fault shim) is not applied to it. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const char* emulator[] = {EMULATOR};
  const size_t n = sizeof emulator / sizeof *emulator;
  char** args = calloc(n + (size_t)argc + 1, sizeof *args);
  if (args == NULL) return 127;
  for (size_t i = 0; i < n; ++i) args[i] = (char*)emulator[i];
  args[n] = (char*)TARGET;
  for (int i = 1; i < argc; ++i) args[n + (size_t)i] = argv[i];
  execv(args[0], args);
  perror(args[0]);
  return 127;
}
