#!/bin/sh
# Builds and runs bench/copy_paths.cpp: the ways to copy and hash bytes that are only moved,
# interleaved, in CPU and wall seconds (docs/convert.md, "How the bytes move").
#   bench/copy_paths.sh INPUT OUTPUT_DIR [ROUNDS]      (output dir on the same filesystem)
#   VARIANTS="0 4 8" bench/copy_paths.sh ...         some of the variants (indexes as listed)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TMPDIR:-/tmp}/shardwise_bench_copy_paths
c++ -O2 -std=c++20 "$here/bench/copy_paths.cpp" -lxxhash -o "$bin"
"$bin" "$@"
