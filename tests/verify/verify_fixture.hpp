#pragma once
// Test-side helpers for the verify tests: a small checkpoint converted once per test process by
// the real binaries (gen_checkpoint, shardwise convert), copies of its output to damage, and raw
// safetensors bytes read, sliced and rebuilt here with code independent of the library.
// Header-only: the tests' glob compiles only *_test.cpp files.

#include <xxhash.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/support.hpp"

namespace shardwise::test {

namespace fs = std::filesystem;

// The tiny generated checkpoint (one input file, tokenizer side files) converted with the bundled
// rules at mp=4, n_experts=8.
struct Converted {
  TempDir dir;
  std::string input = (dir / "in").string();
  std::string output = (dir / "out").string();
};

inline void run_ok(const std::vector<std::string>& argv) {
  const CommandResult r = run_command(argv);
  INFO(argv[0] << " stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
}

inline const Converted& tiny_mp4() {
  static const std::unique_ptr<Converted> converted = [] {
    auto c = std::make_unique<Converted>();
    run_ok({tools_dir() + "/gen_checkpoint", "--out", c->input, "--config", "tiny", "--seed", "11"});
    run_ok({shardwise_binary(), "convert", "--hf-ckpt-path", c->input, "--save-path", c->output,
            "--n-experts", "8", "--model-parallel", "4", "--quiet"});
    return c;
  }();
  return *converted;
}

// A fresh copy of the converted output, to damage: `<where>/out`.
inline std::string copy_of_output(const TempDir& where) {
  const fs::path to = where / "out";
  fs::copy(tiny_mp4().output, to, fs::copy_options::recursive);
  return to.string();
}

inline std::string hex_xxh3(const std::string& bytes) {
  return fmt::format("{:016x}", XXH3_64bits(bytes.data(), bytes.size()));
}

struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::string bytes;
};

// The tensors of a safetensors file, in data order, with their bytes; `absolute` gets each
// tensor's offset in the file.
inline std::vector<RawTensor> read_tensors(const std::string& path,
                                           std::map<std::string, std::uint64_t>* absolute = nullptr) {
  const std::string file = read_file(path);
  REQUIRE(file.size() >= 8);
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < 8; ++i) n |= std::uint64_t{static_cast<unsigned char>(file[i])} << (8 * i);
  REQUIRE(8 + n <= file.size());
  const auto header = nlohmann::json::parse(file.substr(8, n));
  std::map<std::uint64_t, RawTensor> by_offset;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    const auto begin = entry.at("data_offsets")[0].get<std::uint64_t>();
    const auto end = entry.at("data_offsets")[1].get<std::uint64_t>();
    REQUIRE(8 + n + end <= file.size());
    by_offset[begin] = {name, entry.at("dtype").get<std::string>(),
                        entry.at("shape").get<std::vector<std::uint64_t>>(),
                        file.substr(8 + n + begin, end - begin)};
    if (absolute != nullptr) (*absolute)[name] = 8 + n + begin;
  }
  std::vector<RawTensor> tensors;
  for (auto& [offset, t] : by_offset) tensors.push_back(std::move(t));
  return tensors;
}

inline RawTensor tensor_named(const std::vector<RawTensor>& tensors, const std::string& name) {
  for (const RawTensor& t : tensors) {
    if (t.name == name) return t;
  }
  FAIL("no tensor " << name);
  return {};
}

inline std::string build_safetensors(const std::vector<RawTensor>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::string data;
  for (const RawTensor& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  std::string prefix(8, '\0');
  for (std::size_t i = 0; i < 8; ++i) prefix[i] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  return prefix + text + data;
}

// Rows [begin, end) of dim 1 of a 2-D tensor of `element`-byte elements, row by row.
inline std::string slice_dim1(const RawTensor& t, std::size_t element, std::uint64_t begin,
                              std::uint64_t end) {
  REQUIRE(t.shape.size() == 2);
  std::string out;
  const std::uint64_t row = t.shape[1] * element;
  for (std::uint64_t r = 0; r < t.shape[0]; ++r)
    out += t.bytes.substr(r * row + begin * element, (end - begin) * element);
  return out;
}

inline void flip_byte(const std::string& path, std::uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  const int c = f.get();
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x10));
  REQUIRE(f.good());
}

}  // namespace shardwise::test
