// XXH3 compiled for AVX2 (this file alone gets -mavx2; see xxh3_dispatch.cpp): xxHash's header-only
// implementation, its functions private to this file, behind two entry points.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace shardwise::packaging {

XXH64_hash_t xxh3_64bits_avx2(const void* input, size_t length) { return XXH3_64bits(input, length); }

// The state as void*: XXH_INLINE_ALL renames the state's struct in this file (same layout).
int xxh3_64bits_update_avx2(void* state, const void* input, size_t length) {
  return XXH3_64bits_update(static_cast<XXH3_state_t*>(state), input, length);
}

}  // namespace shardwise::packaging
