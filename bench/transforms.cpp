// Bench: the transform kernels on one core, on tensors the size of DeepSeek-V4's (random codes,
// scales in the usual range). Prints, per kernel, the best of RUNS runs in wall time and in the
// thread's CPU time: milliseconds, GB/s of output (and of input, CPU). Build and run: bench/transforms.sh
// [BUILD_DIR] (RUNS=N to change the count).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <vector>

#include <shardwise/transform/kernels.hpp>

namespace {

using namespace shardwise;
using namespace shardwise::transform;

std::vector<std::byte> random_bytes(std::size_t count, std::mt19937& random, int low, int high) {
  std::vector<std::byte> bytes(count);
  std::uniform_int_distribution<int> codes(low, high);
  for (auto& b : bytes) b = std::byte(codes(random));
  return bytes;
}

// CPU time of this thread: on a shared machine, closer to one idle core's speed than wall time.
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

void report(const char* name, std::size_t in_bytes, std::size_t out_bytes, const std::function<void()>& run) {
  const char* env = std::getenv("RUNS");
  const int runs = env != nullptr ? std::max(1, std::atoi(env)) : 7;
  double best = 1e30, best_cpu = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_seconds();
    run();
    best_cpu = std::min(best_cpu, thread_cpu_seconds() - cpu_start);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf("%-54s wall %7.2f ms %6.2f GB/s out | cpu %7.2f ms %6.2f GB/s out %6.2f GB/s in\n", name,
              best * 1e3, static_cast<double>(out_bytes) / best / 1e9, best_cpu * 1e3,
              static_cast<double>(out_bytes) / best_cpu / 1e9,
              static_cast<double>(in_bytes) / best_cpu / 1e9);
}

}  // namespace

int main() {
  std::mt19937 random(1);
  {  // wo_a-like FP8 weight, 8192 x 4096, E8M0 scales [64, 32]
    const std::uint64_t rows = 8192, cols = 4096;
    auto weight = random_bytes(rows * cols, random, 0, 255);
    auto scale = random_bytes(rows / 128 * (cols / 128), random, 110, 130);
    std::vector<std::byte> out(2 * rows * cols);
    report("baseline: memcpy of the same output size", out.size(), out.size(), [&] {
      std::memcpy(out.data(), weight.data(), weight.size()),
          std::memcpy(out.data() + weight.size(), weight.data(), weight.size());
    });
    report("dequantize E4M3 x E8M0 128x128 -> BF16 (8192x4096)", weight.size() + scale.size(), out.size(),
           [&] {
             dequantize_to_bf16({weight, scale, st::DType::F8_E8M0, rows, cols, cols / 128},
                                Bf16Nan::torch_cpu, out);
           });
    std::vector<float> f32(rows / 128 * (cols / 128));
    for (auto& v : f32) v = std::ldexp(1.0f + static_cast<float>(random() % 100) / 100.0f, -10);
    std::vector<std::byte> f32_scale(4 * f32.size());
    std::memcpy(f32_scale.data(), f32.data(), f32_scale.size());
    report("dequantize E4M3 x F32 128x128 -> BF16 (8192x4096)", weight.size() + f32_scale.size(), out.size(),
           [&] {
             dequantize_to_bf16({weight, f32_scale, st::DType::F32, rows, cols, cols / 128}, Bf16Nan::triton,
                                out);
           });
    std::vector<std::byte> small_scale(rows / 8 * (cols / 16) * 4);
    report("dequantize E4M3 x F32 8x16 -> BF16 (8192x4096)", weight.size() + small_scale.size(), out.size(),
           [&] {
             dequantize_to_bf16({weight, small_scale, st::DType::F32, rows, cols, cols / 16, 8, 16},
                                Bf16Nan::triton, out);
           });
  }
  {  // a routed expert's w1, 2048 x 4096 FP4 ([2048, 2048] bytes) + E8M0 [2048, 128]
    const std::uint64_t rows = 2048, cols = 4096;
    auto packed = random_bytes(rows * cols / 2, random, 0, 255);
    auto scale = random_bytes(rows * cols / 32, random, 118, 124);
    std::vector<std::byte> out(rows * cols), out_scale(rows / 128 * (cols / 128));
    report("requantize FP4+E8M0/32 -> E4M3+E8M0/128 (2048x4096)", packed.size() + scale.size(),
           out.size() + out_scale.size(),
           [&] { requantize_fp4_to_fp8(packed, scale, rows, cols, out, out_scale); });
    auto wide = random_bytes(rows * cols / 32, random, 0, 254);
    report("  same, scale codes spread over 0..254", packed.size() + wide.size(),
           out.size() + out_scale.size(),
           [&] { requantize_fp4_to_fp8(packed, wide, rows, cols, out, out_scale); });
  }
  return 0;
}
