// XXH3's run-time dispatch for static x86-64 builds (-DSHARDWISE_STATIC=ON): Debian's libxxhash.so
// has xxh_x86dispatch.c's functions, which pick the widest vector unit at run time, but its
// libxxhash.a does not. These are the two src/convert/checksum.cpp calls through
// xxh_x86dispatch.h: AVX2 when the CPU has it (xxh3_avx2.cpp), else the archive's SSE2 code. The
// digests are the same either way (XXH3's vector paths are bit-identical by design); the state is
// created, reset and digested by the archive, as xxh_x86dispatch.c does.
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxhash.h>
#include <xxh_x86dispatch.h>

namespace shardwise::packaging {
XXH64_hash_t xxh3_64bits_avx2(const void* input, size_t length);
int xxh3_64bits_update_avx2(void* state, const void* input, size_t length);
}  // namespace shardwise::packaging

namespace {
bool has_avx2() {
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return avx2;
}
}  // namespace

extern "C" {

XXH64_hash_t XXH3_64bits_dispatch(const void* input, size_t length) {
  return has_avx2() ? shardwise::packaging::xxh3_64bits_avx2(input, length) : XXH3_64bits(input, length);
}

XXH_errorcode XXH3_64bits_update_dispatch(XXH3_state_t* state, const void* input, size_t length) {
  return has_avx2() ? static_cast<XXH_errorcode>(shardwise::packaging::xxh3_64bits_update_avx2(state, input, length))
                    : XXH3_64bits_update(state, input, length);
}

}  // extern "C"
