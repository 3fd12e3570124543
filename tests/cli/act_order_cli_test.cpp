// GPTQ act-order end to end, with rules/examples/gptq-act-order.yaml (the bundled V4 rules, a
// `g_idx: [in]` member and `in/group_size`): a generated checkpoint (group size 64, g_idx) converted
// at mp 1, 2, 4 and 8, each output tensor compared with a slice of its source cut here by hand; a
// missing g_idx and a wrong group size refused by name; the file's parameter as a real flag.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::generate_checkpoint;
using shardwise::test::read_file;
using shardwise::test::run_shardwise;
using shardwise::test::source_dir;
using shardwise::test::TempDir;

namespace {

const std::string kRules = source_dir() + "/rules/examples/gptq-act-order.yaml";

struct Tensor {
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::string bytes;
};

// Every tensor of every .safetensors file of `folder`, read from the format's definition (an 8-byte
// little-endian header length, the JSON header, offsets relative to the data that follows it).
std::map<std::string, Tensor> read_tensors(const fs::path& folder) {
  std::map<std::string, Tensor> tensors;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() != ".safetensors") continue;
    const std::string file = read_file(entry.path());
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(file[static_cast<std::size_t>(i)]);
    const auto header = nlohmann::json::parse(file.substr(8, n));
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const nlohmann::json& info = it.value();
      if (name == "__metadata__") continue;
      const auto begin = info["data_offsets"][0].get<std::uint64_t>();
      const auto end = info["data_offsets"][1].get<std::uint64_t>();
      tensors[entry.path().filename().string() + ":" + name] =
          Tensor{info["dtype"].get<std::string>(), info["shape"].get<std::vector<std::uint64_t>>(),
                 file.substr(8 + n + begin, end - begin)};
    }
  }
  return tensors;
}

std::uint64_t element_size(const std::string& dtype) { return dtype == "I32" || dtype == "F32" ? 4 : 2; }

// Part `part` of `parts` of `t` along dim `dim` (rows of a 1-D or 2-D row-major tensor).
Tensor slice(const Tensor& t, int dim, std::uint64_t part, std::uint64_t parts) {
  const std::uint64_t es = element_size(t.dtype);
  Tensor s{t.dtype, t.shape, ""};
  const std::uint64_t rows = t.shape[0];
  const std::uint64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
  if (dim == 0) {
    s.shape[0] = rows / parts;
    s.bytes = t.bytes.substr(part * s.shape[0] * cols * es, s.shape[0] * cols * es);
  } else {
    s.shape[1] = cols / parts;
    for (std::uint64_t r = 0; r < rows; ++r)
      s.bytes += t.bytes.substr((r * cols + part * s.shape[1]) * es, s.shape[1] * es);
  }
  return s;
}

// F16 -> BF16 as the reference casts (through F32, round to nearest even); the generated scales are
// finite normals.
Tensor to_bf16(const Tensor& t) {
  Tensor b{"BF16", t.shape, std::string(t.bytes.size(), '\0')};
  for (std::size_t i = 0; i < t.bytes.size(); i += 2) {
    std::uint16_t half = 0;
    std::memcpy(&half, t.bytes.data() + i, 2);
    const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000u) << 16;
    const std::uint32_t exponent = ((half >> 10) & 0x1Fu) + 112;
    const std::uint32_t f32 = sign | exponent << 23 | static_cast<std::uint32_t>(half & 0x3FFu) << 13;
    const auto bf16 = static_cast<std::uint16_t>((f32 + 0x7FFFu + ((f32 >> 16) & 1u)) >> 16);
    std::memcpy(b.bytes.data() + i, &bf16, 2);
  }
  return b;
}

void check_equal(const Tensor& actual, const Tensor& expected) {
  CHECK(actual.dtype == expected.dtype);
  CHECK(actual.shape == expected.shape);
  CHECK(actual.bytes == expected.bytes);
}

}  // namespace

TEST_CASE("act-order: g_idx and group size 64 converted at mp 1, 2, 4, 8, every member sliced as by hand") {
  TempDir dir;
  generate_checkpoint(dir / "in", {"--layers", "1", "--act-order", "--group-size", "64"});  // 8 experts
  const auto in = read_tensors(dir / "in");
  const auto source = [&](const std::string& name) -> const Tensor& {
    return in.at("model.safetensors:" + name);
  };
  REQUIRE(source("layers.0.attn.wo_b.g_idx").shape == std::vector<std::uint64_t>{1024});
  REQUIRE(source("layers.0.attn.wo_b.scales").shape == std::vector<std::uint64_t>{16, 256});  // 1024 / 64

  const std::uint64_t mps[] = {1, 2, 4, 8};
  for (const std::uint64_t mp : mps) {
    INFO("mp=" << mp);
    const fs::path out = dir / ("out" + std::to_string(mp));
    const auto converted = run_shardwise({"convert", "-i", (dir / "in").string(), "-o", out.string(), "-m",
                                          std::to_string(mp), "--n-experts", "8", "-r", kRules, "-q"});
    INFO(converted.err);
    REQUIRE(converted.exit_code == 0);
    const auto verified = run_shardwise({"verify", "-i", (dir / "in").string(), "-o", out.string(), "-m",
                                         std::to_string(mp), "--n-experts", "8", "-r", kRules, "-q"});
    CHECK(verified.exit_code == 0);
    const auto written = read_tensors(out);
    for (std::uint64_t rank = 0; rank < mp; ++rank) {
      INFO("rank " << rank);
      const auto output = [&](const std::string& name) -> const Tensor& {
        return written.at("model" + std::to_string(rank) + "-mp" + std::to_string(mp) +
                          ".safetensors:" + name);
      };
      // Row-parallel (wo_b splits in): every member on its in dim, g_idx included.
      const std::string row = "layers.0.attn.wo_b.";
      check_equal(output(row + "qweight"), slice(source(row + "qweight"), 0, rank, mp));
      check_equal(output(row + "qzeros"), slice(source(row + "qzeros"), 0, rank, mp));
      check_equal(output(row + "scales"), to_bf16(slice(source(row + "scales"), 0, rank, mp)));
      check_equal(output(row + "g_idx"), slice(source(row + "g_idx"), 0, rank, mp));
      // Column-parallel (wq_b splits out): members on their out dim, g_idx whole on every rank.
      const std::string col = "layers.0.attn.wq_b.";
      check_equal(output(col + "qweight"), slice(source(col + "qweight"), 1, rank, mp));
      check_equal(output(col + "qzeros"), slice(source(col + "qzeros"), 1, rank, mp));
      check_equal(output(col + "scales"), to_bf16(slice(source(col + "scales"), 1, rank, mp)));
      check_equal(output(col + "g_idx"), source(col + "g_idx"));
      // Shared experts are replicated, routed experts whole on rank E / (8 / mp).
      check_equal(output("layers.0.ffn.shared_experts.w2.g_idx"),
                  source("layers.0.ffn.shared_experts.w2.g_idx"));
      for (std::uint64_t e = 0; e < 8; ++e) {
        const std::string name = "layers.0.ffn.experts." + std::to_string(e) + ".w2.g_idx";
        if (e / (8 / mp) == rank) {
          check_equal(output(name), source(name));
        } else {
          CHECK(written.count("model" + std::to_string(rank) + "-mp" + std::to_string(mp) +
                              ".safetensors:" + name) == 0);
        }
      }
    }
  }
}

TEST_CASE(
    "act-order: a missing g_idx is named, a wrong group size is refused, the right one given as a flag") {
  TempDir dir;
  generate_checkpoint(dir / "no-g-idx", {"--layers", "1", "--group-size", "64"});
  const auto missing =
      run_shardwise({"plan", "-i", (dir / "no-g-idx").string(), "-m", "2", "--n-experts", "8", "-r", kRules});
  CHECK(missing.exit_code == 4);
  CHECK_THAT(missing.err,
             Catch::Contains("\n  layers.0.attn.wo_b: incomplete packed group (gptq-w4a16): missing g_idx; "
                             "present: layers.0.attn.wo_b.qweight (model.safetensors)"));

  generate_checkpoint(dir / "g128", {"--layers", "1", "--act-order"});  // the generator's default group: 128
  const std::string in = (dir / "g128").string();
  const auto wrong = run_shardwise({"plan", "-i", in, "-m", "2", "--n-experts", "8", "-r", kRules});
  CHECK(wrong.exit_code == 4);
  CHECK_THAT(wrong.err,
             Catch::Contains("layers.0.attn.wo_b: the members of packed layout gptq-w4a16 disagree on in"));
  CHECK_THAT(wrong.err,
             Catch::Contains("scales fits [in/128, out], where the layout says [in/group_size, out] "
                             "(group_size=64)"));
  for (const std::vector<std::string>& given :
       {std::vector<std::string>{"--group-size", "128"}, {"--group-size=128"}, {"-p", "group_size=128"}}) {
    std::vector<std::string> args = {"plan",        "-i", in,   "-m",   "2",
                                     "--n-experts", "8",  "-r", kRules, "--summary"};
    args.insert(args.end(), given.begin(), given.end());
    const auto right = run_shardwise(args);
    INFO(right.err);
    CHECK(right.exit_code == 0);
  }
  const auto zero =
      run_shardwise({"plan", "-i", in, "-m", "2", "--n-experts", "8", "-r", kRules, "--group-size", "0"});
  CHECK(zero.exit_code == 4);
  CHECK_THAT(zero.err, Catch::Contains("member qzeros [in/group_size, out/8]: group_size=0"));
}

TEST_CASE("a rules file's parameters are flags of every command, listed by --help with help and default") {
  for (const char* command : {"plan", "convert", "verify", "explain"}) {
    INFO(command);
    for (const std::vector<std::string>& rules :
         {std::vector<std::string>{"-r", kRules}, {"--rules=" + kRules}}) {
      std::vector<std::string> args = {command};
      args.insert(args.end(), rules.begin(), rules.end());
      args.push_back("--help");
      const auto help = run_shardwise(args);
      CHECK(help.exit_code == 0);
      CHECK_THAT(help.out, Catch::Contains("--group-size UINT") &&
                               Catch::Contains("input channels per quantisation group (default: 64)") &&
                               Catch::Contains("--n-experts UINT") &&
                               Catch::Contains("(required by " + kRules + ")"));
    }
    // Without -r: every bundled file's parameters, saying which declare each, and not the example's
    // --group-size (the bundled gptq-to-bf16 and awq-to-bf16 declare one of their own).
    const auto bundled = run_shardwise({command, "--help"});
    CHECK_THAT(bundled.out, Catch::Contains("--n-experts UINT") &&
                                Catch::Contains("(a parameter of deepseek-v3, deepseek-v3.2, deepseek-v4, "
                                                "deepseek-v4-w4a16; required)"));
    CHECK(bundled.out.find("input channels per quantisation group (default: 64)") == std::string::npos);
    // A file that cannot load: help all the same, saying why its parameters are missing.
    const auto broken = run_shardwise({command, "-r", "/nonexistent/my.yaml", "--help"});
    CHECK(broken.exit_code == 0);
    CHECK_THAT(broken.out,
               Catch::Contains("The parameters of /nonexistent/my.yaml are not listed: cannot open rules "
                               "file /nonexistent/my.yaml"));
  }
}

TEST_CASE("a parameter spelt like an option of a command keeps the option there, --param gives it") {
  TempDir dir;
  const std::string file = (dir / "clash.yaml").string();
  shardwise::test::write_file(file,
                              "shardwise: 1\nname: clash\nextends: deepseek-v4-w4a16\n"
                              "params:\n  format: {default: 1}\n  help: {default: 2}\n  _x: {default: 3}\n");
  const auto plan = run_shardwise({"plan", "-r", file, "--help"});
  CHECK(plan.exit_code == 0);
  CHECK_THAT(plan.out,
             Catch::Contains("The parameter format has no flag: --format is an option of `plan`; give it "
                             "as --param format=VALUE.") &&
                 Catch::Contains("The parameter help has no flag") &&
                 Catch::Contains("The parameter _x has no flag (---x is not an option name)"));
  const auto explain = run_shardwise({"explain", "-r", file, "--help"});
  CHECK(explain.exit_code == 0);
  CHECK_THAT(explain.out, Catch::Contains("--format UINT"));
  const auto given = run_shardwise(
      {"explain", "-r", file, "--n-experts", "8", "--format", "3", "-p", "help=4", "embed.weight"});
  CHECK(given.exit_code == 0);
}

TEST_CASE("rules check lists a file's parameters as their flags, with default and help") {
  const auto checked = run_shardwise({"rules", "check", kRules});
  CHECK(checked.exit_code == 0);
  CHECK_THAT(checked.out,
             Catch::Contains("  params: mp (built in: --model-parallel)\n"
                             "    --group-size N (default: 64): input channels per quantisation group\n"
                             "    --n-experts N (required): routed experts per MoE layer"));
}

TEST_CASE(
    "explain takes a rules file's parameters as --NAME VALUE and --NAME=VALUE, unknown options are named") {
  for (const std::vector<std::string>& given :
       {std::vector<std::string>{"--group-size", "32"}, {"--group-size=32"}, {"-p", "group_size=32"}}) {
    std::vector<std::string> args = {"explain", "-r", kRules, "-m", "2", "--n-experts", "8"};
    args.insert(args.end(), given.begin(), given.end());
    args.insert(args.end(), {"layers.0.attn.wo_b.scales", "layers.0.attn.wo_b.g_idx"});
    const auto result = run_shardwise(args);
    INFO(result.err);
    REQUIRE(result.exit_code == 0);
    CHECK_THAT(result.out,
               Catch::Contains("placement (mp=2): split on logical in into 2 equal parts: scales dim 0 "
                               "(in/group_size, group_size=32)\n"));
    CHECK_THAT(
        result.out,
        Catch::Contains("placement (mp=2): split on logical in into 2 equal parts: g_idx dim 0 (in)\n"));
  }
  const auto unknown =
      run_shardwise({"explain", "-r", kRules, "--n-experts", "8", "--group-sise", "32", "embed.weight"});
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("unknown option --group-sise (did you mean '--group-size'?)"));
  const auto bad =
      run_shardwise({"explain", "-r", kRules, "--n-experts", "8", "--group-size", "x", "embed.weight"});
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err,
             Catch::Contains("--group-size 'x': expected a non-negative integer (parameter group_size)"));
}
