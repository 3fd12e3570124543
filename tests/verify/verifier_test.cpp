// verify_plan and verify_manifest on damaged copies of a real conversion: each damage must be
// reported by file and tensor name, once, and the intact output must verify. Expected checksums
// are computed here from raw bytes (the source sliced by hand), not with the library's streams.
#include <shardwise/verify/verifier.hpp>

#include <filesystem>
#include <functional>

#include <shardwise/output/manifest.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "verify/verify_fixture.hpp"

namespace shardwise::test {
namespace {

const char* const kRank0 = "model0-mp4.safetensors";
const char* const kRank1 = "model1-mp4.safetensors";

const rules::Rules& bundled() {
  static const rules::Rules rules = rules::Rules::bundled();
  return rules;
}

const plan::Plan& tiny_plan() {
  static const plan::Plan plan =
      plan::plan_checkpoint(st::Checkpoint::open(tiny_mp4().input), bundled(), {4, {{"n_experts", 8}}});
  return plan;
}

verify::VerifyOptions options_for(const std::string& out, unsigned threads = 2, std::size_t buffer = 0) {
  verify::VerifyOptions options;
  options.output_dir = out;
  options.threads = threads;
  options.progress = output::ProgressMode::quiet;
  options.buffer_bytes = buffer;
  return options;
}

std::vector<std::string> lines(const verify::VerifyReport& report) {
  std::vector<std::string> out;
  for (const verify::Finding& f : report.findings) out.push_back(f.str());
  return out;
}

std::vector<std::string> plan_findings(const std::string& out) {
  return lines(verify::verify_plan(tiny_plan(), bundled(), options_for(out)));
}
std::vector<std::string> manifest_findings(const std::string& out) {
  return lines(verify::verify_manifest(options_for(out)));
}

std::string input_file() { return tiny_mp4().input + "/model.safetensors"; }

// Rewrites one output file through `edit` of its raw tensors (data order kept).
void rewrite(const std::string& path, const std::function<void(std::vector<RawTensor>&)>& edit) {
  std::vector<RawTensor> tensors = read_tensors(path);
  edit(tensors);
  write_file(path, build_safetensors(tensors));
}

void set_tensor_digest(const std::string& out, const std::string& file, const std::string& tensor,
                       const std::string& hex) {
  const fs::path path = fs::path(out) / output::kManifestFileName;
  auto json = nlohmann::ordered_json::parse(read_file(path));
  for (auto& output : json["outputs"]) {
    if (output["file"] != file) continue;
    for (auto& t : output["tensors"]) {
      if (t["name"] == tensor) t["xxh3"] = hex;
    }
  }
  write_file(path, json.dump(1));
}

TEST_CASE("the intact output verifies, against the plan and against its manifest") {
  const std::string out = tiny_mp4().output;
  std::size_t tensors = 0;
  for (int rank = 0; rank < 4; ++rank)
    tensors += read_tensors(fmt::format("{}/model{}-mp4.safetensors", out, rank)).size();

  const verify::VerifyReport report = verify::verify_plan(tiny_plan(), bundled(), options_for(out));
  CHECK(lines(report).empty());
  CHECK(report.files == 4);
  CHECK(report.tensors == tensors);
  CHECK(report.side_files == 2);
  CHECK(report.manifest_checked);

  const verify::VerifyReport by_manifest = verify::verify_manifest(options_for(out));
  CHECK(lines(by_manifest).empty());
  CHECK(by_manifest.files == 4);
  CHECK(by_manifest.tensors == tensors);
  CHECK(by_manifest.side_files == 2);
}

TEST_CASE("results do not depend on threads or buffer size (buffers smaller than tensors and headers)") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  std::map<std::string, std::uint64_t> at;
  read_tensors(out + "/" + kRank1, &at);
  flip_byte(out + "/" + kRank1, at.at("layers.2.ffn.experts.3.w2.qweight") + 4097);
  for (const unsigned threads : {1u, 3u}) {
    for (const std::size_t buffer : {std::size_t{4096}, std::size_t{12288}, std::size_t{0}}) {
      INFO("threads " << threads << ", buffer " << buffer);
      const auto intact =
          verify::verify_plan(tiny_plan(), bundled(), options_for(tiny_mp4().output, threads, buffer));
      CHECK(lines(intact).empty());
      const auto damaged =
          lines(verify::verify_plan(tiny_plan(), bundled(), options_for(out, threads, buffer)));
      REQUIRE(damaged.size() == 1);
      CHECK_THAT(damaged[0], Catch::StartsWith(std::string(kRank1) +
                                               ": layers.2.ffn.experts.3.w2.qweight: bytes differ"));
      CHECK(lines(verify::verify_manifest(options_for(out, threads, buffer))).size() == 1);
    }
  }
}

TEST_CASE("a flipped byte in a sliced tensor is named with its source slice and both checksums") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  const std::string name = "layers.0.attn.wq_b.qweight";  // I32[32, 512] split on dim 1 over 4 ranks
  const RawTensor source = tensor_named(read_tensors(input_file()), name);
  const std::string expected = hex_xxh3(slice_dim1(source, 4, 128, 256));
  std::map<std::string, std::uint64_t> at;
  const RawTensor written = tensor_named(read_tensors(out + "/" + kRank1, &at), name);
  REQUIRE(hex_xxh3(written.bytes) == expected);  // the conversion itself was right
  flip_byte(out + "/" + kRank1, at.at(name) + 100);
  const std::string found = hex_xxh3(tensor_named(read_tensors(out + "/" + kRank1), name).bytes);

  CHECK(plan_findings(out) ==
        std::vector<std::string>{fmt::format("{}: {}: bytes differ from source slice dim1[128:256] of {} in "
                                             "model.safetensors (expected xxh3 {}, found {})",
                                             kRank1, name, name, expected, found)});
  // Without the input: the manifest recorded the right checksum.
  CHECK(manifest_findings(out) == std::vector<std::string>{fmt::format(
                                      "{}: {}: bytes differ from the manifest (expected xxh3 {}, found {})",
                                      kRank1, name, expected, found)});
}

TEST_CASE("a flipped byte in a cast tensor names the cast") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  const std::string name = "layers.1.attn.wo_a.scales";  // F16[2, 1024] -> BF16, dim 1 over 4 ranks
  const std::string file = "model2-mp4.safetensors";
  std::map<std::string, std::uint64_t> at;
  read_tensors(out + "/" + file, &at);
  flip_byte(out + "/" + file, at.at(name) + 1);
  const std::string found = hex_xxh3(tensor_named(read_tensors(out + "/" + file), name).bytes);
  const auto findings = plan_findings(out);
  REQUIRE(findings.size() == 1);
  CHECK_THAT(findings[0],
             Catch::StartsWith(fmt::format("{}: {}: bytes differ from source slice dim1[512:768] of {} in "
                                           "model.safetensors after the cast F16 -> BF16 (expected xxh3 ",
                                           file, name, name)));
  CHECK_THAT(findings[0], Catch::EndsWith(fmt::format(", found {})", found)));
}

struct Damage {
  const char* what;
  std::function<void(const std::string& out)> apply;
  std::vector<std::string> against_plan;
  std::vector<std::string> against_manifest;  // {"*"}: checked separately
};

TEST_CASE("each damage is reported by name, once, in both modes") {
  const std::string intact = tiny_mp4().output;
  const auto rank3 = read_tensors(intact + "/model3-mp4.safetensors");
  std::uint64_t rank3_data = 0;
  for (const RawTensor& t : rank3) rank3_data += t.bytes.size();
  const auto rank3_size = fs::file_size(intact + "/model3-mp4.safetensors");
  const std::string bad_digest = "0123456789abcdef";
  const std::string wq_a_digest =
      hex_xxh3(tensor_named(read_tensors(intact + "/" + kRank0), "layers.0.attn.wq_a.qweight").bytes);

  const std::vector<Damage> damages = {
      {"a missing file",
       [](const std::string& out) { fs::remove(out + "/model3-mp4.safetensors"); },
       {fmt::format("model3-mp4.safetensors: missing (planned: {} tensors, {} bytes of data)", rank3.size(),
                    rank3_data)},
       {fmt::format("model3-mp4.safetensors: missing (the manifest lists it: {} tensors, {} bytes)",
                    rank3.size(), rank3_size)}},
      {"an extra tensor",
       [](const std::string& out) {
         rewrite(out + "/" + kRank0, [](auto& t) {
           t.push_back({"extra.weight", "F32", {2}, std::string(8, 'x')});
         });
       },
       {std::string(kRank0) + ": extra.weight: unexpected tensor (not in the plan): F32 [2]"},
       {std::string(kRank0) + ": extra.weight: unexpected tensor (not in the manifest)"}},
      {"a missing tensor",
       [](const std::string& out) {
         rewrite(out + "/" + kRank0, [](auto& t) {
           std::erase_if(t, [](const RawTensor& r) { return r.name == "norm.weight"; });
         });
       },
       {std::string(kRank0) + ": norm.weight: missing (planned BF16 [256])"},
       {std::string(kRank0) + ": norm.weight: missing (the manifest lists it)"}},
      {"a wrong dtype in a header",
       [](const std::string& out) {
         rewrite(out + "/" + kRank0, [](auto& tensors) {
           for (RawTensor& t : tensors) {
             if (t.name == "layers.0.attn.wq_a.qweight") t.dtype = "F32";
           }
         });
       },
       {std::string(kRank0) + ": layers.0.attn.wq_a.qweight: dtype F32, planned I32"},
       {"*"}},
      {"a wrong shape in a header",
       [](const std::string& out) {
         rewrite(out + "/" + kRank0, [](auto& tensors) {
           for (RawTensor& t : tensors) {
             if (t.name == "layers.0.attn.wq_a.qweight") t.shape = {256, 32};
           }
         });
       },
       {std::string(kRank0) + ": layers.0.attn.wq_a.qweight: shape [256, 32], planned [32, 256]"},
       {"*"}},
      {"a missing side file",
       [](const std::string& out) { fs::remove(out + "/tokenizer.json"); },
       {"tokenizer.json: missing side file"},
       {"tokenizer.json: missing side file (the manifest lists it)"}},
      {"an output file of another rank",
       [](const std::string& out) { fs::copy_file(out + "/" + kRank0, out + "/model4-mp4.safetensors"); },
       {"model4-mp4.safetensors: unexpected output file: the plan for mp=4 has no rank 4"},
       {}},
      {"a leftover temporary",
       [](const std::string& out) { write_file(out + "/.model1-mp4.safetensors.partial", "x"); },
       {".model1-mp4.safetensors.partial: temporary of model1-mp4.safetensors left by an interrupted "
        "conversion (remove "
        "it, or convert again)"},
       {".model1-mp4.safetensors.partial: temporary of model1-mp4.safetensors left by an interrupted "
        "conversion (remove "
        "it, or convert again)"}},
      {"a stale manifest checksum",
       [&](const std::string& out) {
         set_tensor_digest(out, kRank0, "layers.0.attn.wq_a.qweight", bad_digest);
       },
       {fmt::format(
           "{}: layers.0.attn.wq_a.qweight: the manifest records xxh3 {}, but the tensor (which matches its "
           "source) has {}: the manifest is stale",
           kRank0, bad_digest, wq_a_digest)},
       {fmt::format(
           "{}: layers.0.attn.wq_a.qweight: bytes differ from the manifest (expected xxh3 {}, found {})",
           kRank0, bad_digest, wq_a_digest)}},
      {"no manifest",
       [](const std::string& out) { fs::remove(out + "/" + output::kManifestFileName); },
       {},
       {"shardwise-manifest.json: missing: nothing to verify against without the input (verify with "
        "--hf-ckpt-path "
        "instead)"}},
  };
  for (const Damage& damage : damages) {
    SECTION(damage.what) {
      TempDir tmp;
      const std::string out = copy_of_output(tmp);
      damage.apply(out);
      if (damage.against_plan != std::vector<std::string>{"*"})
        CHECK(plan_findings(out) == damage.against_plan);
      if (damage.against_manifest != std::vector<std::string>{"*"})
        CHECK(manifest_findings(out) == damage.against_manifest);
    }
  }
}

TEST_CASE("a changed side file is compared with the input's") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  const std::string changed = read_file(out + "/tokenizer.json") + " ";
  write_file(out + "/tokenizer.json", changed);
  const std::string expected = hex_xxh3(read_file(tiny_mp4().input + "/tokenizer.json"));
  CHECK(plan_findings(out) ==
        std::vector<std::string>{
            fmt::format("tokenizer.json: side file differs from the input's (expected xxh3 {}, found {})",
                        expected, hex_xxh3(changed))});
  CHECK(manifest_findings(out) ==
        std::vector<std::string>{
            fmt::format("tokenizer.json: side file differs from the manifest (expected xxh3 {}, found {})",
                        expected, hex_xxh3(changed))});
}

TEST_CASE("a header edit that keeps every tensor's bytes is caught by the manifest's whole-file checksum") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  const std::string before = hex_xxh3(read_file(out + "/" + kRank0));
  rewrite(out + "/" + kRank0, [](auto& tensors) {
    for (RawTensor& t : tensors) {
      if (t.name == "layers.0.attn.wq_a.qweight") t.dtype = "F32";
    }
  });
  const std::string after = hex_xxh3(read_file(out + "/" + kRank0));
  CHECK(manifest_findings(out) ==
        std::vector<std::string>{fmt::format(
            "{}: file differs from the manifest (expected xxh3 {}, found {})", kRank0, before, after)});
}

TEST_CASE("a truncated file is reported by name, not a crash") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  const std::string path = out + "/" + kRank1;
  fs::resize_file(path, fs::file_size(path) / 2);
  for (const auto& findings : {plan_findings(out), manifest_findings(out)}) {
    REQUIRE(findings.size() == 1);
    CHECK_THAT(findings[0], Catch::StartsWith(std::string(kRank1) + ": not a valid safetensors file: "));
    CHECK_THAT(findings[0], Catch::Contains("truncated"));
  }
}

TEST_CASE("an interrupted conversion's manifest is reported in both modes") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  const fs::path path = fs::path(out) / output::kManifestFileName;
  auto json = nlohmann::ordered_json::parse(read_file(path));
  json["complete"] = false;
  write_file(path, json.dump(1));
  const std::string expected =
      "shardwise-manifest.json: incomplete (\"complete\": false): the conversion that wrote it was "
      "interrupted; convert "
      "again";
  CHECK(plan_findings(out) == std::vector<std::string>{expected});
  CHECK(manifest_findings(out) == std::vector<std::string>{expected});
}

TEST_CASE("every damage of one run is listed, in file order") {
  TempDir tmp;
  const std::string out = copy_of_output(tmp);
  fs::remove(out + "/model3-mp4.safetensors");
  fs::remove(out + "/tokenizer_config.json");
  std::map<std::string, std::uint64_t> at;
  read_tensors(out + "/" + kRank0, &at);
  flip_byte(out + "/" + kRank0, at.at("head.weight"));
  flip_byte(out + "/" + kRank0, at.at("embed.weight") + 7);
  const auto findings = plan_findings(out);
  REQUIRE(findings.size() == 4);
  CHECK_THAT(findings[0], Catch::StartsWith(std::string(kRank0) +
                                            ": embed.weight: bytes differ from source slice dim0[0:256]"));
  CHECK_THAT(findings[1], Catch::StartsWith(std::string(kRank0) +
                                            ": head.weight: bytes differ from source slice dim0[0:256]"));
  CHECK_THAT(findings[2], Catch::StartsWith("model3-mp4.safetensors: missing (planned: "));
  CHECK(findings[3] == "tokenizer_config.json: missing side file");
}

TEST_CASE("an output path that is a file is an I/O error, a missing folder is every file missing") {
  TempDir tmp;
  write_file(tmp / "file", "x");
  CHECK_THROWS_WITH(verify::verify_plan(tiny_plan(), bundled(), options_for((tmp / "file").string())),
                    "the output path " + (tmp / "file").string() + " is not a folder");
  const auto findings = plan_findings((tmp / "none").string());
  CHECK(findings.size() == 6);  // 4 output files and 2 side files
}

}  // namespace
}  // namespace shardwise::test
