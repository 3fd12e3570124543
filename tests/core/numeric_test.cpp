// fp16/fp32 -> bf16 against PyTorch. The exhaustive fp16 check compares against a published digest
// (an oracle independent of this implementation); the spot values were computed with PyTorch 1.13
// (`torch.tensor([x]).view(...).to(torch.bfloat16)`) and pasted here as literals.

#include <shardwise/core/numeric.hpp>

#include <array>
#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "support/sha256.hpp"

using namespace shardwise;

namespace {

// SHA-256 of the 65,536-entry table: bf16 bits as little-endian u16, indexed by the fp16 bits.
constexpr const char* kTorchFp16ToBf16TableSha256 =
    "37de2c9beecc2633296c26c38c769266445dbdb118bf655d177cddbd3e73914c";

std::vector<unsigned char> little_endian_u16(const std::vector<std::uint16_t>& values) {
  std::vector<unsigned char> bytes;
  for (std::uint16_t v : values) {
    bytes.push_back(static_cast<unsigned char>(v & 0xFF));
    bytes.push_back(static_cast<unsigned char>(v >> 8));
  }
  return bytes;
}

}  // namespace

TEST_CASE("the test SHA-256 matches the FIPS 180-4 examples") {
  CHECK(test::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(test::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(test::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(test::sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("fp16_to_bf16 equals PyTorch on all 65,536 inputs") {
  std::vector<std::uint16_t> table(65536);
  for (std::uint32_t h = 0; h < 65536; ++h) table[h] = fp16_to_bf16(static_cast<std::uint16_t>(h));
  const auto bytes = little_endian_u16(table);
  CHECK(test::sha256_hex(bytes.data(), bytes.size()) == kTorchFp16ToBf16TableSha256);
}

TEST_CASE("convert_f16_to_bf16 equals PyTorch on all 65,536 inputs, at any alignment") {
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<std::uint16_t>(h);
  const auto src = little_endian_u16(all);
  for (std::size_t shift : {0, 1, 3}) {  // tensor data inside a mapping need not be aligned
    std::vector<std::byte> in(src.size() + shift), out(src.size() + shift);
    std::memcpy(in.data() + shift, src.data(), src.size());
    convert_f16_to_bf16(in.data() + shift, out.data() + shift, all.size());
    CHECK(test::sha256_hex(out.data() + shift, src.size()) == kTorchFp16ToBf16TableSha256);
  }
}

TEST_CASE("fp16_to_bf16 spot values from PyTorch") {
  struct Case {
    std::uint16_t half, bf16;
  };
  constexpr std::array<Case, 22> cases{{
      {0x0000, 0x0000}, {0x8000, 0x8000},                    // signed zeros
      {0x0001, 0x3380}, {0x8001, 0xB380}, {0x0007, 0x34E0},  // subnormals
      {0x0201, 0x3800}, {0x03FF, 0x3880},                    // subnormals that round up
      {0x0400, 0x3880}, {0x3C00, 0x3F80},                    // smallest normal, 1.0
      {0x3C01, 0x3F80}, {0x3C04, 0x3F80},                    // below / at a tie to even (down)
      {0x3C08, 0x3F81}, {0x3C0C, 0x3F82}, {0x3C14, 0x3F82},  // above; tie to even (up); tie (down)
      {0x7BFF, 0x4780}, {0xFBFF, 0xC780},                    // largest finite
      {0x7C00, 0x7F80}, {0xFC00, 0xFF80},                    // infinities
      {0x7C01, 0x7FC0}, {0x7E00, 0x7FC0}, {0xFE00, 0x7FC0}, {0xFFFF, 0x7FC0},  // every NaN
  }};
  for (const auto& c : cases) {
    INFO("fp16 0x" << std::hex << c.half);
    CHECK(fp16_to_bf16(c.half) == c.bf16);
  }
}

TEST_CASE("fp32_to_bf16 spot values from PyTorch") {
  struct Case {
    std::uint32_t single;
    std::uint16_t bf16;
  };
  // NaNs: PyTorch's CPU cast of an fp32 tensor is ATen's vectorised kernel (x86 AVX2/AVX512), which
  // writes 0xFFFF for every NaN, sign and payload aside; the reference converter's `.to(bfloat16)`
  // of fp32 scales goes through it. (Its scalar c10::BFloat16, used for fp16 input, writes 0x7FC0.)
  constexpr std::array<Case, 30> cases{{
      {0x00000000, 0x0000}, {0x80000000, 0x8000},                        // signed zeros
      {0x3F800000, 0x3F80}, {0x3FC00000, 0x3FC0},                        // exact
      {0x3F808000, 0x3F80}, {0x3F818000, 0x3F82},                        // ties to even
      {0x3F808001, 0x3F81}, {0x3F807FFF, 0x3F80}, {0x3F80FFFF, 0x3F81},  // around a tie
      {0x40490FDB, 0x4049}, {0xC0490FDB, 0xC049}, {0x387FC000, 0x3880},  // pi, -pi, carry
      {0x7F7FFFFF, 0x7F80}, {0xFF7FFFFF, 0xFF80}, {0x7F7F8000, 0x7F80},  // round to infinity
      {0x7F7F7FFF, 0x7F7F},                                              // largest kept finite
      {0x7F800000, 0x7F80}, {0xFF800000, 0xFF80},                        // infinities
      {0x7F800001, 0xFFFF}, {0x7FC00000, 0xFFFF}, {0xFFC00000, 0xFFFF},  // NaN payloads, signs
      {0xFFFFFFFF, 0xFFFF}, {0x7FBFFFFF, 0xFFFF}, {0x00000001, 0x0000},
      {0x80000001, 0x8000}, {0x00008000, 0x0000},  // subnormals
      {0x00018000, 0x0002}, {0x00007FFF, 0x0000}, {0x007FFFFF, 0x0080},
      {0x00800000, 0x0080},  // smallest normal
  }};
  std::vector<std::byte> src(4 * cases.size()), dst(2 * cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("fp32 0x" << std::hex << cases[i].single);
    CHECK(fp32_to_bf16(cases[i].single) == cases[i].bf16);
    std::memcpy(src.data() + 4 * i, &cases[i].single, 4);
  }
  convert_f32_to_bf16(src.data(), dst.data(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::uint16_t got;
    std::memcpy(&got, dst.data() + 2 * i, 2);
    INFO("bulk fp32 0x" << std::hex << cases[i].single);
    CHECK(got == cases[i].bf16);
  }
}

TEST_CASE("convert_f32_to_bf16 agrees with the scalar form on a sweep of bit patterns") {
  // Every 65,537th pattern plus its neighbours covers all exponents and both signs.
  std::vector<std::uint32_t> inputs;
  for (std::uint64_t b = 0; b <= 0xFFFFFFFFu; b += 65537) {
    for (std::uint64_t d : {0u, 1u, 0x7FFFu, 0x8000u}) inputs.push_back(static_cast<std::uint32_t>(b + d));
  }
  std::vector<std::byte> src(4 * inputs.size()), dst(2 * inputs.size());
  std::memcpy(src.data(), inputs.data(), src.size());
  convert_f32_to_bf16(src.data(), dst.data(), inputs.size());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    std::uint16_t got;
    std::memcpy(&got, dst.data() + 2 * i, 2);
    if (got != fp32_to_bf16(inputs[i])) ++mismatches;
  }
  CHECK(mismatches == 0);
}
