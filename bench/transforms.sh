#!/bin/sh
# Builds and runs bench/transforms.cpp against a build dir's static libraries (default: build).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
cmake --build "$build" --target shardwise_transform shardwise_safetensors shardwise_core -j2 >/dev/null
c++ -O2 -std=c++20 -I"$here/include" "$here/bench/transforms.cpp" \
  "$build/libshardwise_transform.a" "$build/libshardwise_safetensors.a" "$build/libshardwise_core.a" \
  -lfmt -o "$build/bench_transforms"
"$build/bench_transforms"
