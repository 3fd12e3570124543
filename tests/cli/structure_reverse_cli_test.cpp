// The structure examples (llama-tp-fused, moe-stacked-experts, phi3-unfuse) at mp 1, 2, 4 and 8,
// with head and expert counts other than structure_cli_test's, read from config.json: every output
// tensor compared with this file's slicing of the inputs (STRUCTURE_OPS 2.2, 2.4, 5.6: a rank's
// fused qkv is cat(q_r, k_r, v_r), a key/value head on mp / kv ranks when there are fewer than
// ranks, experts [r*E/M, (r+1)*E/M) stacked), every folder verified, and `convert --reverse` of it
// giving the input back byte for byte (names, dtypes, shapes, bytes). Counts that cannot be cut for
// mp 8, a missing part and a wrong-sized part are refused by name.

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/bf16_tensors.hpp"
#include "support/cli.hpp"
#include "support/support.hpp"

namespace fs = std::filesystem;
using shardwise::test::run_shardwise;
using shardwise::test::source_dir;
using shardwise::test::TempDir;
using namespace shardwise::test::bf16;

namespace {

const std::string kLlamaRules = source_dir() + "/rules/examples/llama-tp-fused.yaml";
const std::string kMoeRules = source_dir() + "/rules/examples/moe-stacked-experts.yaml";
const std::string kPhiRules = source_dir() + "/rules/examples/phi3-unfuse.yaml";

// The input as the reversal must write it: Hugging Face's one file.
Tensors as_reversed(const Tensors& in) {
  Tensors out;
  for (const auto& [name, t] : in) out["model.safetensors:" + name] = t;
  return out;
}

// Converts `in` at `mp` with `rules` (counts from its config.json), compares every output tensor
// with `expected`, verifies the folder, reverses it and compares the result with the input.
void round_trip(const fs::path& in, const Tensors& tensors, const std::string& rules, std::uint64_t mp,
                const Tensors& expected) {
  INFO("mp=" << mp);
  TempDir out;
  const auto run = run_shardwise({"convert", "-i", in.string(), "-o", (out / "o").string(), "-m",
                                  std::to_string(mp), "--rules", rules, "-q"});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  compare(expected, read_outputs(out / "o"));
  const auto verified = run_shardwise(
      {"verify", "-i", in.string(), "-o", (out / "o").string(), "-m", std::to_string(mp), "--rules", rules});
  INFO(verified.out << verified.err);
  CHECK(verified.exit_code == 0);
  const auto reversed = run_shardwise(
      {"convert", "--reverse", "-i", (out / "o").string(), "-o", (out / "back").string(), "-q"});
  INFO(reversed.err);
  REQUIRE(reversed.exit_code == 0);
  compare(as_reversed(tensors), read_outputs(out / "back"));
  // The examples copy config.json (the counts they read), so the reversed folder has it back.
  CHECK(shardwise::test::read_file(out / "back" / "config.json") ==
        shardwise::test::read_file(in / "config.json"));
}

// ---- Llama / Qwen2 dense ---------------------------------------------------------------------------

struct Dense {
  std::uint64_t heads, kv_heads, head_dim = 2, hidden = 8, inter = 16, vocab = 16;
  int layers = 2;
};

Tensors dense_checkpoint(const Dense& d, bool fused) {
  std::uint32_t next = 5;
  Tensors t;
  t["model.embed_tokens.weight"] = make({d.vocab, d.hidden}, next);
  t["lm_head.weight"] = make({d.vocab, d.hidden}, next);
  t["model.norm.weight"] = make({d.hidden}, next);
  for (int l = 0; l < d.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::uint64_t q = d.heads * d.head_dim, kv = d.kv_heads * d.head_dim;
    if (fused) {
      t[p + "self_attn.qkv_proj.weight"] = make({q + 2 * kv, d.hidden}, next);
      t[p + "mlp.gate_up_proj.weight"] = make({2 * d.inter, d.hidden}, next);
    } else {
      for (const std::string param : {"weight", "bias"}) {
        const Shape tail = param == "weight" ? Shape{d.hidden} : Shape{};
        const auto shape = [&](std::uint64_t n) {
          Shape s{n};
          s.insert(s.end(), tail.begin(), tail.end());
          return s;
        };
        t[p + "self_attn.q_proj." + param] = make(shape(q), next);
        t[p + "self_attn.k_proj." + param] = make(shape(kv), next);
        t[p + "self_attn.v_proj." + param] = make(shape(kv), next);
      }
      t[p + "mlp.gate_proj.weight"] = make({d.inter, d.hidden}, next);
      t[p + "mlp.up_proj.weight"] = make({d.inter, d.hidden}, next);
    }
    t[p + "self_attn.o_proj.weight"] = make({d.hidden, q}, next);
    t[p + "mlp.down_proj.weight"] = make({d.hidden, d.inter}, next);
    t[p + "input_layernorm.weight"] = make({d.hidden}, next);
    t[p + "post_attention_layernorm.weight"] = make({d.hidden}, next);
  }
  return t;
}

// Rank r's key or value rows: its block of heads, or with fewer heads than ranks the one head
// g = r * KV / M (STRUCTURE_OPS 2.2).
Tensor kv_rows(const Tensor& t, const Dense& d, std::uint64_t r, std::uint64_t mp) {
  if (d.kv_heads >= mp) return block(t, 0, r, mp);
  const std::uint64_t g = r * d.kv_heads / mp;
  return rows(t, g * d.head_dim, (g + 1) * d.head_dim);
}

nlohmann::json dense_config(const Dense& d) {
  return {{"num_attention_heads", d.heads}, {"num_key_value_heads", d.kv_heads}};
}

// llama-tp-fused: STRUCTURE_OPS section 6, "Dense -> per-rank fused".
Tensors fused_expected(const Tensors& in, const Dense& d, std::uint64_t mp) {
  Tensors e;
  for (std::uint64_t r = 0; r < mp; ++r) {
    const std::string f = "rank" + std::to_string(r) + ".safetensors:";
    e[f + "embed_tokens.weight"] = block(in.at("model.embed_tokens.weight"), 0, r, mp);
    e[f + "lm_head.weight"] = block(in.at("lm_head.weight"), 0, r, mp);
    e[f + "norm.weight"] = in.at("model.norm.weight");
    for (int l = 0; l < d.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const std::string o = f + "layers." + std::to_string(l) + ".";
      for (const std::string param : {"weight", "bias"}) {
        e[o + "attn.qkv." + param] = cat({block(in.at(p + "self_attn.q_proj." + param), 0, r, mp),
                                          kv_rows(in.at(p + "self_attn.k_proj." + param), d, r, mp),
                                          kv_rows(in.at(p + "self_attn.v_proj." + param), d, r, mp)});
      }
      e[o + "attn.o_proj.weight"] = block(in.at(p + "self_attn.o_proj.weight"), 1, r, mp);
      e[o + "mlp.gate_up.weight"] = cat({block(in.at(p + "mlp.gate_proj.weight"), 0, r, mp),
                                         block(in.at(p + "mlp.up_proj.weight"), 0, r, mp)});
      e[o + "mlp.down_proj.weight"] = block(in.at(p + "mlp.down_proj.weight"), 1, r, mp);
      e[o + "input_layernorm.weight"] = in.at(p + "input_layernorm.weight");
      e[o + "post_attention_layernorm.weight"] = in.at(p + "post_attention_layernorm.weight");
    }
  }
  return e;
}

// phi3-unfuse: qkv_proj cut in H*hd, KV*hd, KV*hd rows and gate_up_proj in halves (section 5.6),
// then each placed as Llama's tensor of its name.
Tensors unfused_expected(const Tensors& in, const Dense& d, std::uint64_t mp) {
  Tensors e;
  const std::uint64_t q = d.heads * d.head_dim, kv = d.kv_heads * d.head_dim;
  for (std::uint64_t r = 0; r < mp; ++r) {
    const std::string f = "model-rank" + std::to_string(r) + "-mp" + std::to_string(mp) + ".safetensors:";
    e[f + "model.embed_tokens.weight"] = block(in.at("model.embed_tokens.weight"), 0, r, mp);
    e[f + "lm_head.weight"] = block(in.at("lm_head.weight"), 0, r, mp);
    e[f + "model.norm.weight"] = in.at("model.norm.weight");
    for (int l = 0; l < d.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const Tensor& qkv = in.at(p + "self_attn.qkv_proj.weight");
      e[f + p + "self_attn.q_proj.weight"] = block(rows(qkv, 0, q), 0, r, mp);
      e[f + p + "self_attn.k_proj.weight"] = kv_rows(rows(qkv, q, q + kv), d, r, mp);
      e[f + p + "self_attn.v_proj.weight"] = kv_rows(rows(qkv, q + kv, q + 2 * kv), d, r, mp);
      const Tensor& gate_up = in.at(p + "mlp.gate_up_proj.weight");
      e[f + p + "mlp.gate_proj.weight"] = block(rows(gate_up, 0, d.inter), 0, r, mp);
      e[f + p + "mlp.up_proj.weight"] = block(rows(gate_up, d.inter, 2 * d.inter), 0, r, mp);
      e[f + p + "self_attn.o_proj.weight"] = block(in.at(p + "self_attn.o_proj.weight"), 1, r, mp);
      e[f + p + "mlp.down_proj.weight"] = block(in.at(p + "mlp.down_proj.weight"), 1, r, mp);
      e[f + p + "input_layernorm.weight"] = in.at(p + "input_layernorm.weight");
      e[f + p + "post_attention_layernorm.weight"] = in.at(p + "post_attention_layernorm.weight");
    }
  }
  return e;
}

}  // namespace

TEST_CASE("llama-tp-fused at mp 1, 2, 4 and 8 (kv heads replicated when fewer), reversed byte for byte") {
  // 32/8: kv heads divide every mp; 16/2: each kv head on 2 ranks at mp 4, on 4 at mp 8.
  for (const Dense d : {Dense{32, 8}, Dense{16, 2, 4}}) {
    INFO("heads " << d.heads << ", kv heads " << d.kv_heads);
    TempDir dir;
    const Tensors in = dense_checkpoint(d, false);
    write_safetensors(dir / "model.safetensors", in);
    write_config(dir.path(), dense_config(d));
    for (const std::uint64_t mp : {1u, 2u, 4u, 8u})
      round_trip(dir.path(), in, kLlamaRules, mp, fused_expected(in, d, mp));
  }
}

TEST_CASE("phi3-unfuse at mp 1, 2, 4 and 8 (kv heads replicated when fewer), reversed byte for byte") {
  for (const Dense d : {Dense{32, 8}, Dense{16, 2, 4}}) {
    INFO("heads " << d.heads << ", kv heads " << d.kv_heads);
    TempDir dir;
    const Tensors in = dense_checkpoint(d, true);
    write_safetensors(dir / "model.safetensors", in);
    write_config(dir.path(), dense_config(d));
    for (const std::uint64_t mp : {1u, 2u, 4u, 8u})
      round_trip(dir.path(), in, kPhiRules, mp, unfused_expected(in, d, mp));
  }
}

TEST_CASE("llama-tp-fused and phi3-unfuse refuse mp 8 for 12 query heads, naming the tensor and the counts") {
  const Dense d{12, 4};
  for (const bool fused : {false, true}) {
    TempDir dir;
    write_safetensors(dir / "model.safetensors", dense_checkpoint(d, fused));
    write_config(dir.path(), dense_config(d));
    const auto run = run_shardwise({"convert", "-i", dir.str(), "-o", (dir / "o").string(), "-m", "8",
                                    "--rules", fused ? kPhiRules : kLlamaRules, "-q"});
    INFO(run.err);
    CHECK(run.exit_code == 4);
    // q_proj, or for phi3 its chunk of qkv_proj, named by its source.
    CHECK(run.err.find("model.layers.0.self_attn.q") != std::string::npos);
    CHECK(run.err.find("12 units (heads=12) cannot be split over mp=8: 12 is not a multiple of 8") !=
          std::string::npos);
    CHECK_FALSE(shardwise::test::holds_rank_file(dir / "o"));
  }
}

TEST_CASE("llama-tp-fused at mp 8 refuses a missing part and a part of the wrong size, naming both") {
  const Dense d{16, 2, 4};
  Tensors in = dense_checkpoint(d, false);
  TempDir dir;
  SECTION("missing") {
    in.erase("model.layers.1.self_attn.k_proj.bias");
    write_safetensors(dir / "model.safetensors", in);
    write_config(dir.path(), dense_config(d));
    const auto run = run_shardwise({"plan", "-i", dir.str(), "-m", "8", "--rules", kLlamaRules});
    CHECK(run.exit_code == 4);
    CHECK(run.err.find("layers.1.attn.qkv.bias on rank 7 (fuse[qkv] at") != std::string::npos);
    CHECK(run.err.find("missing part k_proj (present: q_proj, v_proj)") != std::string::npos);
  }
  SECTION("wrong size") {
    std::uint32_t next = 50000;
    in["model.layers.0.mlp.up_proj.weight"] = make({d.inter, d.hidden + 1}, next);
    write_safetensors(dir / "model.safetensors", in);
    write_config(dir.path(), dense_config(d));
    const auto run = run_shardwise({"plan", "-i", dir.str(), "-m", "8", "--rules", kLlamaRules});
    CHECK(run.exit_code == 4);
    CHECK(run.err.find("layers.0.mlp.gate_up.weight on rank 0 (fuse[gate_up] at") != std::string::npos);
    CHECK(run.err.find("part up_proj (model.layers.0.mlp.up_proj.weight) is BF16[2, 9]") !=
          std::string::npos);
  }
}

namespace {

// ---- Mixtral / Qwen3-MoE -> stacked experts --------------------------------------------------------

struct Moe {
  std::uint64_t experts;
  bool mixtral;  // Mixtral's block_sparse_moe / w1 w3 w2 and num_local_experts, else Qwen3-MoE's names
  std::uint64_t hidden = 4, inter = 2;
  int layers = 2;
};

std::string expert_name(const Moe& m, int layer, std::uint64_t e, const std::string& which) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  if (!m.mixtral) return p + "mlp.experts." + std::to_string(e) + "." + which + "_proj.weight";
  const char* w = which == "gate" ? "w1" : which == "up" ? "w3" : "w2";
  return p + "block_sparse_moe.experts." + std::to_string(e) + "." + w + ".weight";
}

Tensors moe_checkpoint(const Moe& m) {
  std::uint32_t next = 9;
  Tensors t;
  t["model.embed_tokens.weight"] = make({8, m.hidden}, next);
  t["lm_head.weight"] = make({8, m.hidden}, next);
  t["model.norm.weight"] = make({m.hidden}, next);
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t[p + "self_attn.q_proj.weight"] = make({m.hidden, m.hidden}, next);
    t[p + (m.mixtral ? "block_sparse_moe" : "mlp") + ".gate.weight"] = make({m.experts, m.hidden}, next);
    for (std::uint64_t e = 0; e < m.experts; ++e) {
      t[expert_name(m, l, e, "gate")] = make({m.inter, m.hidden}, next);
      t[expert_name(m, l, e, "up")] = make({m.inter, m.hidden}, next);
      t[expert_name(m, l, e, "down")] = make({m.hidden, m.inter}, next);
    }
    t[p + "input_layernorm.weight"] = make({m.hidden}, next);
  }
  return t;
}

// STRUCTURE_OPS section 6, "MoE -> stacked with EP": experts [r*E/M, (r+1)*E/M) stacked, per expert
// cat(gate, up) then down; every other tensor whole under its name, block_sparse_moe read as mlp.
Tensors moe_expected(const Tensors& in, const Moe& m, std::uint64_t mp) {
  Tensors e;
  for (std::uint64_t r = 0; r < mp; ++r) {
    const std::string f = "rank" + std::to_string(r) + ".safetensors:";
    for (const auto& [name, t] : in) {
      if (name.find(".experts.") != std::string::npos) continue;
      std::string out = name;
      if (const auto at = out.find("block_sparse_moe"); at != std::string::npos) out.replace(at, 16, "mlp");
      e[f + out] = t;
    }
    for (int l = 0; l < m.layers; ++l) {
      std::vector<Tensor> gate_up, down;
      for (std::uint64_t x = r * m.experts / mp; x < (r + 1) * m.experts / mp; ++x) {
        gate_up.push_back(cat({in.at(expert_name(m, l, x, "gate")), in.at(expert_name(m, l, x, "up"))}));
        down.push_back(in.at(expert_name(m, l, x, "down")));
      }
      const std::string p = f + "model.layers." + std::to_string(l) + ".mlp.experts.";
      e[p + "gate_up_proj"] = stack(gate_up);
      e[p + "down_proj"] = stack(down);
    }
  }
  return e;
}

}  // namespace

TEST_CASE("moe-stacked-experts at mp 1, 2, 4 and 8 with 8 and 16 experts, reversed byte for byte") {
  for (const Moe m : {Moe{8, true}, Moe{16, false}}) {
    INFO(m.experts << " experts, " << (m.mixtral ? "Mixtral" : "Qwen3-MoE") << " names");
    TempDir dir;
    const Tensors in = moe_checkpoint(m);
    write_safetensors(dir / "model.safetensors", in);
    write_config(dir.path(), {{m.mixtral ? "num_local_experts" : "num_experts", m.experts}});
    for (const std::uint64_t mp : {1u, 2u, 4u, 8u}) {
      const Tensors expected = moe_expected(in, m, mp);
      CHECK(expected.at("rank0.safetensors:model.layers.0.mlp.experts.gate_up_proj").shape ==
            Shape{m.experts / mp, 2 * m.inter, m.hidden});
      round_trip(dir.path(), in, kMoeRules, mp, expected);
    }
  }
}

TEST_CASE("moe-stacked-experts refuses 12 experts over mp 8, naming the count") {
  TempDir dir;
  write_safetensors(dir / "model.safetensors", moe_checkpoint(Moe{12, true}));
  write_config(dir.path(), {{"num_local_experts", 12}});
  const auto run = run_shardwise({"plan", "-i", dir.str(), "-m", "8", "--rules", kMoeRules});
  INFO(run.err);
  CHECK(run.exit_code == 4);
  CHECK(run.err.find("12") != std::string::npos);
}

TEST_CASE("convert --reverse refuses a damaged fused output, and fused outputs of a version 5 manifest") {
  const Dense d{16, 2, 4};
  TempDir dir;
  fs::create_directories(dir / "in");
  write_safetensors(dir / "in" / "model.safetensors", dense_checkpoint(d, false));
  write_config(dir / "in", dense_config(d));
  const auto run = run_shardwise({"convert", "-i", (dir / "in").string(), "-o", (dir / "o").string(), "-m",
                                  "8", "--rules", kLlamaRules, "-q"});
  REQUIRE(run.exit_code == 0);
  const fs::path manifest = dir / "o" / "shardwise-manifest.json";
  const std::string recorded = shardwise::test::read_file(manifest);
  SECTION("a byte of rank 5's fused qkv changed") {
    // Its last row is a copy of a value head (held by ranks 4 to 7): the fused tensor no longer has
    // its recorded checksum, and nothing is written.
    const fs::path rank5 = dir / "o" / "rank5.safetensors";
    std::string bytes = shardwise::test::read_file(rank5);
    const Tensors before = read_outputs(dir / "o");
    const std::string& qkv = before.at("rank5.safetensors:layers.1.attn.qkv.weight").bytes;
    const auto at = bytes.find(qkv);
    REQUIRE(at != std::string::npos);
    bytes[at + qkv.size() - 1] ^= 1;
    shardwise::test::write_file(rank5, bytes);
    const auto reversed = run_shardwise(
        {"convert", "--reverse", "-i", (dir / "o").string(), "-o", (dir / "back").string(), "-q"});
    CHECK(reversed.exit_code == 4);
    CHECK(reversed.err.find("rank5.safetensors: layers.1.attn.qkv.weight has xxh3 ") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "back" / "model.safetensors"));
  }
  SECTION("the manifest says version 5") {
    std::string old = recorded;
    const std::string version = "\"shardwise_manifest\":6";
    const auto at = old.find(version);
    REQUIRE(at != std::string::npos);
    old.replace(at, version.size(), "\"shardwise_manifest\":5");
    shardwise::test::write_file(manifest, old);
    const auto reversed = run_shardwise(
        {"convert", "--reverse", "-i", (dir / "o").string(), "-o", (dir / "back").string(), "-q"});
    CHECK(reversed.exit_code == 4);
    CHECK(reversed.err.find("6 tensors made by fuse rules (the first: layers.0.attn.qkv.bias), recorded by "
                            "manifest version 5, which does not record their parts' origins") !=
          std::string::npos);
  }
}

TEST_CASE("phi3-unfuse and moe-stacked-experts at mp 8 refuse a wrong-sized and a missing part by name") {
  TempDir dir;
  SECTION("phi3: a qkv_proj whose rows are not heads + 2 kv_heads parts") {
    const Dense d{16, 2, 4};
    Tensors in = dense_checkpoint(d, true);
    std::uint32_t next = 40000;
    in["model.layers.1.self_attn.qkv_proj.weight"] = make({(16 + 2 * 2) * 4 + 1, d.hidden}, next);
    write_safetensors(dir / "model.safetensors", in);
    write_config(dir.path(), dense_config(d));
    const auto run = run_shardwise({"plan", "-i", dir.str(), "-m", "8", "--rules", kPhiRules});
    INFO(run.err);
    CHECK(run.exit_code == 4);
    CHECK(run.err.find("model.layers.1.self_attn.qkv_proj.weight (model.safetensors): unfuse[qkv] cannot cut "
                       "[81, 8] along dim 0") != std::string::npos);
  }
  SECTION("moe: an expert without its up projection") {
    const Moe m{8, true};
    Tensors in = moe_checkpoint(m);
    in.erase(expert_name(m, 1, 6, "up"));
    write_safetensors(dir / "model.safetensors", in);
    write_config(dir.path(), {{"num_local_experts", 8}});
    const auto run = run_shardwise({"plan", "-i", dir.str(), "-m", "8", "--rules", kMoeRules});
    INFO(run.err);
    CHECK(run.exit_code == 4);
    CHECK(run.err.find("model.layers.1.mlp.experts.6: missing up_proj.weight") != std::string::npos);
  }
}

TEST_CASE("reshard refuses a folder with fused outputs and replicated heads, saying how many and the first") {
  const Dense d{16, 2, 4};
  TempDir dir;
  fs::create_directories(dir / "in");
  write_safetensors(dir / "in" / "model.safetensors", dense_checkpoint(d, false));
  write_config(dir / "in", dense_config(d));
  for (const auto& [rules, mp] : {std::pair(kLlamaRules, "8"), std::pair(kPhiRules, "4")}) {
    INFO(rules);
    fs::remove_all(dir / "o");
    fs::remove_all(dir / "in" / "model.safetensors");
    write_safetensors(dir / "in" / "model.safetensors", dense_checkpoint(d, rules == kPhiRules));
    const auto run = run_shardwise({"convert", "-i", (dir / "in").string(), "-o", (dir / "o").string(), "-m",
                                    mp, "--rules", rules, "-q"});
    REQUIRE(run.exit_code == 0);
    const auto reshard =
        run_shardwise({"reshard", "--from", (dir / "o").string(), "-o", (dir / "r").string(), "-m", "2"});
    CHECK(reshard.exit_code == 4);
    if (rules == kLlamaRules) {
      CHECK(reshard.err.find(
                "6 fused outputs (the first: layers.0.attn.qkv.bias in rank0.safetensors), made by "
                "rules fuse:") != std::string::npos);
    } else {
      CHECK(reshard.err.find("4 tensors (the first: model.layers.0.self_attn.k_proj.weight in "
                             "model-rank0-mp4.safetensors), held whole by several ranks") !=
            std::string::npos);
    }
    CHECK_FALSE(shardwise::test::holds_rank_file(dir / "r"));
  }
}

TEST_CASE("convert --reverse --dry-run names the fused output of each part and the rows of each chunk") {
  const Dense d{16, 2, 4};
  TempDir dir;
  for (const bool fused : {false, true}) {
    fs::remove_all(dir / "o");
    fs::create_directories(dir / "in");
    write_safetensors(dir / "in" / "model.safetensors", dense_checkpoint(d, fused));
    write_config(dir / "in", dense_config(d));
    const auto run = run_shardwise({"convert", "-i", (dir / "in").string(), "-o", (dir / "o").string(), "-m",
                                    "2", "--rules", fused ? kPhiRules : kLlamaRules, "-q"});
    REQUIRE(run.exit_code == 0);
    const auto dry = run_shardwise(
        {"convert", "--reverse", "-i", (dir / "o").string(), "-o", (dir / "back").string(), "--dry-run"});
    INFO(dry.out << dry.err);
    CHECK(dry.exit_code == 0);
    if (fused) {
      CHECK(dry.out.find("  model.layers.1.self_attn.qkv_proj.weight BF16[80, 8] <- "
                         "model.layers.1.self_attn.q_proj.weight (rows 0:64) + "
                         "model.layers.1.self_attn.k_proj.weight (rows 64:72) + "
                         "model.layers.1.self_attn.v_proj.weight (rows 72:80)\n") != std::string::npos);
    } else {
      CHECK(dry.out.find(
                "  model.layers.1.self_attn.k_proj.weight BF16[8, 8] <- layers.1.attn.k_proj.weight (a "
                "part of layers.1.attn.qkv.weight)\n") != std::string::npos);
    }
    CHECK_FALSE(fs::exists(dir / "back"));
  }
}
