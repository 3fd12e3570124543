#!/bin/sh
# Builds and runs bench/rules_match.cpp against a build dir's static libraries (default: build).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
cmake --build "$build" --target shardwise_rules shardwise_safetensors shardwise_core -j2 >/dev/null
c++ -O2 -std=c++20 -I"$here/include" "$here/bench/rules_match.cpp" \
  "$build/libshardwise_rules.a" "$build/libshardwise_safetensors.a" "$build/libshardwise_core.a" \
  $(pkg-config --libs re2) -lyaml-cpp -lfmt -o "$build/bench_rules_match"
"$build/bench_rules_match"
