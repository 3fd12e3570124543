// The bundled rules gptq-to-bf16, awq-to-bf16 and fp8-to-bf16 end to end on checkpoints built here:
// members packed as their writers pack them (GPTQModel's v1 as v2 words minus 0x11111111, AutoAWQ's
// order_map, act-order g_idx with a partial group, members in another file than their qweight),
// FP8 weights of all 256 E4M3 codes with block scales of each dtype, per-channel and per-tensor
// scales. Every expected element is computed here from the definitions (exact_formats.hpp: values
// from their bit fields, the float32 product from the exact one, rounding by exact comparison),
// never by the kernels under test. verify recomputes through the same transform and catches one
// changed byte (exit 6).

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "convert/fixture.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"
#include "transform/exact_formats.hpp"

namespace fs = std::filesystem;
using shardwise::test::build_safetensors;
using shardwise::test::parse_safetensors;
using shardwise::test::ParsedTensor;
using shardwise::test::RawTensor;
using shardwise::test::read_file;
using shardwise::test::run_shardwise;
using shardwise::test::TempDir;
using shardwise::test::write_file;
namespace exact = shardwise::test::exact;

namespace {

// A small deterministic generator (the test needs spread, not quality).
struct Lcg {
  std::uint64_t state;
  std::uint32_t next() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(state >> 33);
  }
};

template <typename T>
std::string le_bytes(const std::vector<T>& values) {
  std::string out;
  for (const T v : values) {
    for (std::size_t b = 0; b < sizeof(T); ++b)
      out += static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * b)) & 0xFF);
  }
  return out;
}

std::uint16_t u16_at(const std::string& bytes, std::size_t i) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(bytes[2 * i]) |
                                    (static_cast<unsigned char>(bytes[2 * i + 1]) << 8));
}

// F16 scales with the special values of QUANT_FORMATS.md section 5 among ordinary ones.
const std::uint16_t kSpecialF16[] = {0x7E00, 0x7C01, 0xFE00, 0x7C00, 0xFC00, 0x0000, 0x8000,
                                     0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7B53, 0x3C03, 0xBC03};

std::uint16_t some_f16_scale(Lcg& rng, std::size_t index) {
  if (index % 5 == 0) return kSpecialF16[(index / 5) % std::size(kSpecialF16)];
  // Positive and negative normal values around 2^-8 .. 2^1.
  const auto exponent = static_cast<std::uint16_t>(7 + rng.next() % 9);
  return static_cast<std::uint16_t>((rng.next() % 2 ? 0x8000 : 0) | (exponent << 10) | (rng.next() % 1024));
}

// Output bits the rule gives: out(f32(a) x f32(b)), NaN canonical.
std::uint16_t expected_bits(float a, float b, bool f16) {
  const float p = exact::product(a, b);
  return f16 ? exact::round_to_f16(p) : exact::round_to_bf16(p, 0x7FC0);
}

// Every tensor of every .safetensors file of `dir`.
std::map<std::string, ParsedTensor> all_tensors(const fs::path& dir) {
  std::map<std::string, ParsedTensor> tensors;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    for (auto& [name, t] : parse_safetensors(read_file(entry.path()))) tensors.emplace(name, t);
  }
  return tensors;
}

std::string index_json(const std::map<std::string, std::string>& weight_map) {
  std::string json = "{\"metadata\": {}, \"weight_map\": {";
  bool first = true;
  for (const auto& [name, file] : weight_map) {
    json += (first ? "\"" : ", \"") + name + "\": \"" + file + "\"";
    first = false;
  }
  return json + "}}";
}

// Two files and an index: `a` holds `in_a`, `b` the others.
void write_checkpoint(const fs::path& dir, const std::vector<RawTensor>& in_a,
                      const std::vector<RawTensor>& in_b) {
  const std::string a = "model-00001-of-00002.safetensors", b = "model-00002-of-00002.safetensors";
  write_file(dir / a, build_safetensors(in_a));
  write_file(dir / b, build_safetensors(in_b));
  std::map<std::string, std::string> map;
  for (const RawTensor& t : in_a) map[t.name] = a;
  for (const RawTensor& t : in_b) map[t.name] = b;
  write_file(dir / "model.safetensors.index.json", index_json(map));
}

// Flips one byte of `tensor`'s data in whichever output file holds it.
void corrupt(const fs::path& dir, const std::string& tensor) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    std::string file = read_file(entry.path());
    const auto parsed = parse_safetensors(file);
    const auto it = parsed.find(tensor);
    if (it == parsed.end()) continue;
    const std::size_t at = file.rfind(it->second.bytes);
    REQUIRE(at != std::string::npos);
    file[at + it->second.bytes.size() / 2] ^= 0x01;
    write_file(entry.path(), file);
    return;
  }
  FAIL("no output file holds " << tensor);
}

// Converts, checks verify passes, then corrupts `weight` and checks verify fails with 6.
std::map<std::string, ParsedTensor> convert_and_verify(const fs::path& in, const fs::path& out,
                                                       const std::string& rules,
                                                       const std::vector<std::string>& params,
                                                       const std::string& weight) {
  std::vector<std::string> run = {"convert", "-i", in.string(), "-o", out.string(), "--rules", rules, "-q"};
  run.insert(run.end(), params.begin(), params.end());
  const auto converted = run_shardwise(run);
  INFO(converted.err);
  REQUIRE(converted.exit_code == 0);
  std::vector<std::string> check = {"verify", "-i", in.string(), "-o", out.string(), "--rules", rules, "-q"};
  check.insert(check.end(), params.begin(), params.end());
  const auto verified = run_shardwise(check);
  INFO(verified.err << verified.out);
  CHECK(verified.exit_code == 0);
  auto tensors = all_tensors(out);
  corrupt(out, weight);
  CHECK(run_shardwise(check).exit_code == 6);
  return tensors;
}

// ---- GPTQ / AWQ ----

struct IntCase {
  std::string packing;  // gptq, gptq_v2, awq
  unsigned bits = 4;
  bool act_order = false;
  bool sym = false;
  bool f16 = false;
};

constexpr std::uint64_t kIn = 80, kOut = 16, kGroupSize = 32;  // three groups, the last one partial

void check_int_case(const IntCase& c) {
  INFO(c.packing << " " << c.bits << "-bit act-order=" << c.act_order << " sym=" << c.sym
                 << " f16=" << c.f16);
  Lcg rng{c.bits * 1000 + (c.act_order ? 7 : 0) + (c.sym ? 13 : 0) + c.packing.size()};
  const std::uint64_t groups = (kIn + kGroupSize - 1) / kGroupSize;
  const std::uint32_t levels = 1u << c.bits;
  const bool awq = c.packing == "awq";
  std::vector<std::vector<std::uint32_t>> q(kIn, std::vector<std::uint32_t>(kOut));
  for (auto& row : q) {
    for (auto& v : row) v = rng.next() % levels;
  }
  q[0][0] = 0;
  q[1][0] = levels - 1;
  std::vector<std::vector<std::uint32_t>> z(groups, std::vector<std::uint32_t>(kOut));
  for (std::uint64_t g = 0; g < groups; ++g) {
    for (std::uint64_t o = 0; o < kOut; ++o) {
      // Zeros 0 (a v1 borrow from the next field) and 2^b - 1 among others.
      z[g][o] = c.sym ? levels / 2 : (o % 3 == 0 ? 0 : o % 3 == 1 ? levels - 1 : rng.next() % levels);
    }
  }
  std::vector<std::uint16_t> scales(groups * kOut);
  for (std::size_t k = 0; k < scales.size(); ++k) scales[k] = some_f16_scale(rng, k);
  // The group of each input row: act-order writes a permutation's groups.
  std::vector<std::uint32_t> g_idx(kIn);
  for (std::uint64_t i = 0; i < kIn; ++i) g_idx[i] = static_cast<std::uint32_t>(i / kGroupSize);
  if (c.act_order) {
    for (std::uint64_t i = kIn - 1; i > 0; --i) std::swap(g_idx[i], g_idx[rng.next() % (i + 1)]);
  }
  // Packed as the writers pack.
  const std::uint32_t per_word = 32 / c.bits;
  std::vector<std::uint32_t> qweight, qzeros;
  std::vector<std::uint64_t> qweight_shape, qzeros_shape;
  if (awq) {
    static const unsigned kOrderMap[] = {0, 2, 4, 6, 1, 3, 5, 7};
    qweight.assign(kIn * kOut / 8, 0);
    for (std::uint64_t i = 0; i < kIn; ++i) {
      for (std::uint64_t k = 0; k < kOut / 8; ++k) {
        for (unsigned j = 0; j < 8; ++j) qweight[i * (kOut / 8) + k] |= q[i][8 * k + kOrderMap[j]] << (4 * j);
      }
    }
    qzeros.assign(groups * kOut / 8, 0);
    for (std::uint64_t g = 0; g < groups; ++g) {
      for (std::uint64_t k = 0; k < kOut / 8; ++k) {
        for (unsigned j = 0; j < 8; ++j) qzeros[g * (kOut / 8) + k] |= z[g][8 * k + kOrderMap[j]] << (4 * j);
      }
    }
    qweight_shape = {kIn, kOut / 8};
    qzeros_shape = {groups, kOut / 8};
  } else {
    qweight.assign(kIn / per_word * kOut, 0);
    for (std::uint64_t i = 0; i < kIn; ++i) {
      for (std::uint64_t o = 0; o < kOut; ++o)
        qweight[i / per_word * kOut + o] |= q[i][o] << (c.bits * (i % per_word));
    }
    qzeros.assign(groups * kOut / per_word, 0);
    for (std::uint64_t g = 0; g < groups; ++g) {
      for (std::uint64_t o = 0; o < kOut; ++o)
        qzeros[g * (kOut / per_word) + o / per_word] |= z[g][o] << (c.bits * (o % per_word));
    }
    if (c.packing == "gptq") {
      // GPTQModel's v1: every v2 word minus 0x11..1 (a zero of 0 borrows from the next field).
      const std::uint32_t ones = c.bits == 4 ? 0x11111111u : c.bits == 8 ? 0x01010101u : 0x55555555u;
      for (auto& word : qzeros) word -= ones;
    }
    qweight_shape = {kIn / per_word, kOut};
    qzeros_shape = {groups, kOut / per_word};
  }
  const std::string m = "model.layers.0.mlp.down_proj";
  std::vector<RawTensor> b = {{m + ".qzeros", "I32", qzeros_shape, le_bytes(qzeros)},
                              {m + ".scales", "F16", {groups, kOut}, le_bytes(scales)}};
  if (!awq && (c.act_order || c.bits != 4)) b.push_back({m + ".g_idx", "I32", {kIn}, le_bytes(g_idx)});
  const std::vector<RawTensor> a = {
      {m + ".qweight", "I32", qweight_shape, le_bytes(qweight)},
      {m + ".bias", "F16", {kOut}, le_bytes(std::vector<std::uint16_t>(kOut, 0x3C00))},
      {"model.norm.weight", "BF16", {2}, std::string("\x80\x3f\x00\x40", 4)}};
  TempDir in, out;
  write_checkpoint(in.path(), a, b);
  std::vector<std::string> params = {"--group-size", std::to_string(kGroupSize), "--dtype",
                                     c.f16 ? "f16" : "bf16"};
  if (!awq) params.insert(params.end(), {"--bits", std::to_string(c.bits), "--checkpoint-format", c.packing});
  const auto tensors =
      convert_and_verify(in.path(), out.path(), awq ? "awq-to-bf16" : "gptq-to-bf16", params, m + ".weight");
  CHECK(tensors.count(m + ".qweight") == 0);
  CHECK(tensors.count(m + ".qzeros") == 0);
  CHECK(tensors.count(m + ".scales") == 0);
  CHECK(tensors.count(m + ".g_idx") == 0);
  REQUIRE(tensors.count(m + ".bias") == 1);
  CHECK(tensors.at(m + ".bias").dtype == "F16");
  CHECK(tensors.at("model.norm.weight").bytes == std::string("\x80\x3f\x00\x40", 4));
  REQUIRE(tensors.count(m + ".weight") == 1);
  const ParsedTensor& w = tensors.at(m + ".weight");
  CHECK(w.dtype == (c.f16 ? "F16" : "BF16"));
  REQUIRE(w.shape == std::vector<std::uint64_t>{kOut, kIn});
  std::size_t wrong = 0;
  for (std::uint64_t o = 0; o < kOut; ++o) {
    for (std::uint64_t i = 0; i < kIn; ++i) {
      const std::uint32_t g = g_idx[i];
      const float d =
          static_cast<float>(static_cast<std::int64_t>(q[i][o]) - static_cast<std::int64_t>(z[g][o]));
      const std::uint16_t want = expected_bits(d, exact::f16_value(scales[g * kOut + o]), c.f16);
      if (u16_at(w.bytes, o * kIn + i) != want && ++wrong <= 5) {
        FAIL_CHECK("W[" << o << ", " << i << "] is 0x" << std::hex << u16_at(w.bytes, o * kIn + i)
                        << ", expected 0x" << want);
      }
    }
  }
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("gptq-to-bf16: v1 and v2, 2/4/8-bit, sym and asym, act-order, to BF16 and F16, exact") {
  for (const std::string packing : {"gptq", "gptq_v2"}) {
    for (const unsigned bits : {2u, 4u, 8u}) {
      check_int_case({packing, bits, false, false, false});
      check_int_case({packing, bits, true, false, bits == 4});
    }
    check_int_case({packing, 4, false, true, false});
    check_int_case({packing, 4, true, true, true});
  }
}

TEST_CASE("awq-to-bf16: GEMM layout in AWQ's nibble order, to BF16 and F16, exact") {
  check_int_case({"awq", 4, false, false, false});
  check_int_case({"awq", 4, false, false, true});
}

TEST_CASE("gptq-to-bf16 refuses members that do not fit the packing, naming the tensors and numbers") {
  TempDir in, out;
  const std::string m = "model.layers.0.q_proj";
  write_checkpoint(in.path(),
                   {{m + ".qweight", "I32", {8, 16}, std::string(8 * 16 * 4, '\0')},
                    {"model.layers.1.k_proj.qweight", "I32", {8, 16}, std::string(8 * 16 * 4, '\0')}},
                   {{m + ".qzeros", "I32", {3, 2}, std::string(3 * 2 * 4, '\0')},
                    {m + ".scales", "F16", {3, 16}, std::string(3 * 16 * 2, '\0')},
                    {"model.layers.1.k_proj.scales", "F16", {2, 16}, std::string(2 * 16 * 2, '\0')}});
  const auto planned =
      run_shardwise({"plan", "-i", in.str(), "--rules", "gptq-to-bf16", "--group-size", "32"});
  CHECK(planned.exit_code == 4);
  // in = 8 x 8 = 64: two groups of 32, not three; and the second module has no zeros.
  CHECK_THAT(planned.err,
             Catch::Contains("model.layers.0.q_proj.qweight I32[8, 16] as gptq 4-bit, group 32"));
  CHECK_THAT(planned.err, Catch::Contains("[out, in] = [16, 64] and 2 groups"));
  CHECK_THAT(planned.err,
             Catch::Contains("zeros model.layers.0.q_proj.qzeros I32[3, 2], expected I32[2, 2]"));
  CHECK_THAT(planned.err,
             Catch::Contains("its zeros model.layers.1.k_proj.qzeros are not in the checkpoint"));
  const auto bits = run_shardwise({"plan", "-i", in.str(), "--rules", "gptq-to-bf16", "--bits", "3"});
  CHECK(bits.exit_code == 4);
  CHECK_THAT(
      bits.err,
      Catch::Contains("bits=3 is not a width handled (GPTQ: 2, 4 or 8; every packed weight is refused)"));
}

// ---- FP8 ----

namespace {

constexpr std::uint64_t kRows = 16, kCols = 20;  // 320 codes: all 256 and more

std::vector<std::uint8_t> every_code() {
  std::vector<std::uint8_t> codes(kRows * kCols);
  for (std::size_t k = 0; k < codes.size(); ++k) codes[k] = static_cast<std::uint8_t>((k * 7) % 256);
  return codes;
}

struct Fp8Case {
  std::string label;
  std::string scale_name;  // suffix appended to the weight's name or stem
  std::string dtype;       // of the scale
  std::vector<std::uint64_t> shape;
  std::uint64_t block_rows, block_cols;  // of the grid it stands for (kRows / kCols: whole)
};

float scale_value(const std::string& dtype, const std::string& bytes, std::size_t k) {
  if (dtype == "F32") {
    std::uint32_t bits = 0;
    for (int b = 0; b < 4; ++b)
      bits |= std::uint32_t{static_cast<unsigned char>(bytes[4 * k + b])} << (8 * b);
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  if (dtype == "F8_E8M0") return exact::e8m0_value(static_cast<std::uint8_t>(bytes[k]));
  const std::uint16_t bits = u16_at(bytes, k);
  return dtype == "BF16" ? exact::bf16_value(bits) : exact::f16_value(bits);
}

std::string scale_bytes(const std::string& dtype, std::size_t count, Lcg& rng) {
  std::string out;
  for (std::size_t n = 0; n < count; ++n) {
    const std::size_t k = count == 1 ? 8 : n;  // one scale: an ordinary value, not the NaN first
    if (dtype == "F32") {
      static const std::uint32_t kSpecial[] = {0x7FC00000, 0x7F800000, 0xFF800000, 0x80000000, 0x000116C2,
                                               0x7F7FFFFF, 0x00800000, 0x00000001, 0x3FD238E4};
      const std::uint32_t bits =
          k < std::size(kSpecial) ? kSpecial[k] : 0x3B000000 + (rng.next() & 0x01FFFFFF);
      out += le_bytes(std::vector<std::uint32_t>{bits});
    } else if (dtype == "F8_E8M0") {
      out += static_cast<char>(k == 0 ? 0xFF : k == 1 ? 0x00 : 100 + rng.next() % 50);
    } else {
      static const std::uint16_t kSpecialBf16[] = {0x7FC0, 0x7F80, 0xFF80, 0x8000, 0x0001, 0x7F7F, 0xBF80};
      std::uint16_t bits;
      if (dtype == "BF16")
        bits = k < std::size(kSpecialBf16) ? kSpecialBf16[k]
                                           : static_cast<std::uint16_t>(0x3000 + rng.next() % 0x1800);
      else
        bits = some_f16_scale(rng, k);
      out += le_bytes(std::vector<std::uint16_t>{bits});
    }
  }
  return out;
}

void check_fp8_case(const Fp8Case& c, bool f16) {
  INFO(c.label << " f16=" << f16);
  Lcg rng{c.label.size() * 31 + (f16 ? 1 : 0)};
  const std::vector<std::uint8_t> codes = every_code();
  std::size_t count = 1;
  for (const auto d : c.shape) count *= d;
  const std::string scale = scale_bytes(c.dtype, count, rng);
  const std::string w = "model.layers.0.self_attn.o_proj.weight";
  const std::string scale_name =
      c.scale_name == "_scale_inv" ? w + "_scale_inv" : "model.layers.0.self_attn.o_proj" + c.scale_name;
  TempDir in, out;
  write_checkpoint(in.path(),
                   {{w, "F8_E4M3", {kRows, kCols}, std::string(codes.begin(), codes.end())},
                    {"model.embed_tokens.weight", "BF16", {2, 2}, std::string(8, '\x11')}},
                   {{scale_name, c.dtype, c.shape, scale},
                    {"model.layers.0.self_attn.o_proj.input_scale",
                     "F32",
                     {1},
                     le_bytes(std::vector<std::uint32_t>{0x3F800000})}});
  const auto tensors =
      convert_and_verify(in.path(), out.path(), "fp8-to-bf16",
                         {"--dtype", f16 ? "f16" : "bf16", "--block-rows", "8", "--block-cols", "8"}, w);
  CHECK(tensors.count(scale_name) == 0);
  CHECK(tensors.count("model.layers.0.self_attn.o_proj.input_scale") == 0);
  CHECK(tensors.at("model.embed_tokens.weight").dtype == "BF16");
  REQUIRE(tensors.count(w) == 1);
  const ParsedTensor& t = tensors.at(w);
  CHECK(t.dtype == (f16 ? "F16" : "BF16"));
  REQUIRE(t.shape == std::vector<std::uint64_t>{kRows, kCols});
  const std::uint64_t scale_cols = c.shape.size() == 2 ? c.shape[1] : 1;
  std::size_t wrong = 0;
  for (std::uint64_t r = 0; r < kRows; ++r) {
    for (std::uint64_t col = 0; col < kCols; ++col) {
      const std::size_t k = count == 1 ? 0 : (r / c.block_rows) * scale_cols + col / c.block_cols;
      const std::uint16_t want =
          expected_bits(exact::e4m3_value(codes[r * kCols + col]), scale_value(c.dtype, scale, k), f16);
      if (u16_at(t.bytes, r * kCols + col) != want && ++wrong <= 5) {
        FAIL_CHECK("W[" << r << ", " << col << "] is 0x" << std::hex << u16_at(t.bytes, r * kCols + col)
                        << ", expected 0x" << want);
      }
    }
  }
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("fp8-to-bf16: every E4M3 code x block scales of each dtype, per channel and per tensor, exact") {
  const Fp8Case cases[] = {
      {"block F32", "_scale_inv", "F32", {2, 3}, 8, 8},
      {"block BF16", "_scale_inv", "BF16", {2, 3}, 8, 8},
      {"block F16", "_scale_inv", "F16", {2, 3}, 8, 8},
      {"block E8M0", "_scale_inv", "F8_E8M0", {2, 3}, 8, 8},
      {"compressed-tensors block", ".weight_scale", "BF16", {2, 3}, 8, 8},
      {"per channel", ".weight_scale", "BF16", {kRows, 1}, 1, kCols},
      {"per tensor [1]", ".weight_scale", "F32", {1}, kRows, kCols},
      {"per tensor []", ".weight_scale", "BF16", {}, kRows, kCols},
  };
  for (const Fp8Case& c : cases) {
    check_fp8_case(c, false);
    check_fp8_case(c, true);
  }
}

TEST_CASE("fp8-to-bf16 refuses a zero point, a weight without its scale and a scale of another shape") {
  TempDir in;
  write_checkpoint(in.path(),
                   {{"a.weight", "F8_E4M3", {4, 4}, std::string(16, '\x38')},
                    {"b.weight", "F8_E4M3", {4, 4}, std::string(16, '\x38')},
                    {"c.weight", "F8_E4M3", {4, 4}, std::string(16, '\x38')}},
                   {{"a.weight_scale", "F32", {4, 2}, std::string(32, '\0')},
                    {"a.weight_zero_point", "I8", {4, 1}, std::string(4, '\0')},
                    {"c.weight_scale_inv", "F32", {1, 1}, std::string(4, '\0')}});
  const auto planned = run_shardwise({"plan", "-i", in.str(), "--rules", "fp8-to-bf16"});
  CHECK(planned.exit_code == 4);
  CHECK_THAT(planned.err, Catch::Contains("a.weight_zero_point"));
  CHECK_THAT(planned.err, Catch::Contains("asymmetric FP8"));
  CHECK_THAT(planned.err, Catch::Contains("its scale a.weight_scale is F32[4, 2], expected"));
  CHECK_THAT(planned.err, Catch::Contains("b.weight_scale_inv or b.weight_scale"));
}
