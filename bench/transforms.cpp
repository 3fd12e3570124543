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

#include <shardwise/transform/dequantize_int.hpp>
#include <shardwise/transform/fp8_scales.hpp>
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
  {  // Hugging Face releases: a 4096 x 11008 GPTQ / AWQ module (in 11008 = 86 groups of 128), whole
    const std::uint64_t in = 11008, out = 4096, groups = in / 128;
    std::vector<std::byte> out_bytes(2 * in * out);
    auto qweight4 = random_bytes(in * out / 2, random, 0, 255);
    auto qzeros4 = random_bytes(groups * out / 2, random, 0, 255);
    std::vector<std::byte> scales(2 * groups * out);
    for (std::size_t k = 0; k < scales.size(); k += 2)
      scales[k + 1] = std::byte(0x20 + random() % 16);  // F16 ~2^-7
    std::vector<std::byte> g_idx(4 * in);
    for (std::uint64_t i = 0; i < in; ++i) {
      const auto g = static_cast<std::int32_t>((i * 7919) % in / 128);
      std::memcpy(g_idx.data() + 4 * i, &g, 4);
    }
    const auto run_int = [&](IntPacking packing, unsigned bits, const std::vector<std::byte>& qweight,
                             const std::vector<std::byte>& qzeros, std::span<const std::byte> index,
                             st::DType out_dtype) {
      IntQuantBand band{{packing, bits, in, out, groups, 128},
                        {0, out, 0, in},
                        qweight,
                        qzeros,
                        scales,
                        st::DType::F16,
                        index,
                        st::DType::I32};
      dequantize_int(band, {out_dtype, Bf16Nan::canonical}, out_bytes);
    };
    const std::size_t in4 = qweight4.size() + qzeros4.size() + scales.size();
    report("GPTQ v1 4-bit g128 -> BF16 (4096x11008)", in4, out_bytes.size(),
           [&] { run_int(IntPacking::gptq, 4, qweight4, qzeros4, {}, st::DType::BF16); });
    report("GPTQ v1 4-bit g128 -> F16 (4096x11008)", in4, out_bytes.size(),
           [&] { run_int(IntPacking::gptq, 4, qweight4, qzeros4, {}, st::DType::F16); });
    report("GPTQ v2 4-bit g128 act-order -> BF16 (4096x11008)", in4 + g_idx.size(), out_bytes.size(),
           [&] { run_int(IntPacking::gptq_v2, 4, qweight4, qzeros4, g_idx, st::DType::BF16); });
    report("AWQ GEMM 4-bit g128 -> BF16 (4096x11008)", in4, out_bytes.size(),
           [&] { run_int(IntPacking::awq, 4, qweight4, qzeros4, {}, st::DType::BF16); });
    auto qweight8 = random_bytes(in * out, random, 0, 255);
    auto qzeros8 = random_bytes(groups * out, random, 0, 255);
    report("GPTQ v1 8-bit g128 -> BF16 (4096x11008)", qweight8.size() + qzeros8.size() + scales.size(),
           out_bytes.size(), [&] { run_int(IntPacking::gptq, 8, qweight8, qzeros8, {}, st::DType::BF16); });
    // In output-row bands of 64, as the engine would call it (the first band's input slices every time:
    // the kernel alone is timed).
    report("GPTQ v1 4-bit g128 -> BF16, bands of 64 rows", in4, out_bytes.size(), [&] {
      for (std::uint64_t first = 0; first < out; first += 64) {
        IntQuantBand band{{IntPacking::gptq, 4, in, out, groups, 128},
                          {first, 64, 0, in},
                          std::span(qweight4).first(in / 8 * 64 * 4),
                          std::span(qzeros4).first(groups * 8 * 4),
                          std::span(scales).first(groups * 64 * 2),
                          st::DType::F16,
                          {},
                          st::DType::I32};
        dequantize_int(band, {st::DType::BF16, Bf16Nan::canonical},
                       std::span(out_bytes).subspan(2 * first * in, 2 * 64 * in));
      }
    });
  }
  {  // FP8 releases: 8192 x 4096 E4M3, BF16 block scales 128x128 (Qwen3-FP8) and per-channel
    const std::uint64_t rows = 8192, cols = 4096;
    auto weight = random_bytes(rows * cols, random, 0, 255);
    std::vector<std::byte> out(2 * rows * cols), block_scale(2 * (rows / 128) * (cols / 128)),
        channel_scale(2 * rows);
    for (std::size_t k = 0; k < block_scale.size(); k += 2) block_scale[k + 1] = std::byte(0x3B);
    for (std::size_t k = 0; k < channel_scale.size(); k += 2) channel_scale[k + 1] = std::byte(0x3B);
    report("FP8 x BF16 128x128 -> BF16 (8192x4096)", weight.size() + block_scale.size(), out.size(), [&] {
      dequantize_fp8(
          {weight, block_scale, st::DType::BF16, ScaleGrid::blocks(128, 128), 0, rows, cols, cols / 128},
          {st::DType::BF16, Bf16Nan::canonical}, out);
    });
    report("FP8 x BF16 128x128 -> F16 (8192x4096)", weight.size() + block_scale.size(), out.size(), [&] {
      dequantize_fp8(
          {weight, block_scale, st::DType::BF16, ScaleGrid::blocks(128, 128), 0, rows, cols, cols / 128},
          {st::DType::F16, Bf16Nan::canonical}, out);
    });
    report(
        "FP8 x BF16 per channel -> BF16 (8192x4096)", weight.size() + channel_scale.size(), out.size(), [&] {
          dequantize_fp8({weight, channel_scale, st::DType::BF16, ScaleGrid::per_channel(), 0, rows, cols, 1},
                         {st::DType::BF16, Bf16Nan::canonical}, out);
        });
  }
  return 0;
}
