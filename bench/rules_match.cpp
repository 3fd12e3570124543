// Bench: how long the bundled rules take to decide every tensor name of a DeepSeek-V4-Pro W4A16
// checkpoint (61 layers + 1 MTP block, 384 routed experts, GPTQ triples). Prints names, seconds,
// and ns per name. Build and run: bench/rules_match.sh [BUILD_DIR]
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include <shardwise/rules/rules.hpp>

namespace {

std::vector<std::string> pro_names() {
  const char* packed[] = {"qweight", "qzeros", "scales"};
  const char* plain[] = {"attn_norm.weight",
                         "ffn_norm.weight",
                         "hc_attn_fn",
                         "hc_attn_base",
                         "hc_attn_scale",
                         "hc_ffn_fn",
                         "hc_ffn_base",
                         "hc_ffn_scale",
                         "attn.q_norm.weight",
                         "attn.kv_norm.weight",
                         "attn.attn_sink",
                         "attn.compressor.ape",
                         "attn.compressor.norm.weight",
                         "attn.indexer.compressor.ape",
                         "attn.indexer.compressor.norm.weight",
                         "ffn.gate.weight",
                         "ffn.gate.bias"};
  const char* linears[] = {"attn.wq_a",
                           "attn.wq_b",
                           "attn.wkv",
                           "attn.wo_a",
                           "attn.wo_b",
                           "attn.compressor.wkv",
                           "attn.compressor.wgate",
                           "attn.indexer.wq_b",
                           "attn.indexer.weights_proj",
                           "attn.indexer.compressor.wkv",
                           "attn.indexer.compressor.wgate",
                           "ffn.shared_experts.w1",
                           "ffn.shared_experts.w2",
                           "ffn.shared_experts.w3"};
  std::vector<std::string> names{"embed.weight", "head.weight",  "norm.weight",
                                 "hc_head_fn",   "hc_head_base", "hc_head_scale"};
  for (int block = 0; block <= 61; ++block) {
    const std::string prefix = block < 61 ? "layers." + std::to_string(block) + "." : "mtp.0.";
    for (const char* p : plain) names.push_back(prefix + p);
    for (const char* l : linears) {
      for (const char* s : packed) names.push_back(prefix + l + "." + s);
    }
    for (int e = 0; e < 384; ++e) {
      for (const char* w : {"w1", "w2", "w3"}) {
        for (const char* s : packed)
          names.push_back(prefix + "ffn.experts." + std::to_string(e) + "." + w + "." + s);
      }
    }
  }
  return names;
}

}  // namespace

int main() {
  const auto names = pro_names();
  const auto t0 = std::chrono::steady_clock::now();
  const auto rules = shardwise::rules::Rules::bundled();
  const auto params = rules.resolve_params({{"mp", 8}, {"n_experts", 384}});
  const auto t1 = std::chrono::steady_clock::now();
  const std::clock_t cpu0 = std::clock();  // CPU time too: on a shared machine wall time overstates
  std::size_t placed = 0;
  for (const auto& name : names) {  // as the planner decides: without the steps `explain` shows
    const auto decision = rules.decide(name, params, shardwise::rules::Rules::Trail::omit);
    placed += decision.kind == shardwise::rules::Decision::Kind::place ? 1 : 0;
  }
  const auto t2 = std::chrono::steady_clock::now();
  const double cpu = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  const double load = std::chrono::duration<double>(t1 - t0).count();
  const double match = std::chrono::duration<double>(t2 - t1).count();
  std::printf(
      "load+compile: %.4f s; decide %zu names (%zu placed): %.3f s wall, %.3f s CPU, %.0f ns CPU/name\n",
      load, names.size(), placed, match, cpu, cpu * 1e9 / static_cast<double>(names.size()));
  return placed == names.size() ? 0 : 1;
}
