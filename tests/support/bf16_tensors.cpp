#include "support/bf16_tensors.hpp"

#include <catch2/catch.hpp>

#include "convert/fixture.hpp"
#include "support/support.hpp"

namespace shardwise::test::bf16 {

namespace fs = std::filesystem;

// Every element distinct across the checkpoint: the running counter `next` (16 bits wrap, so
// tensors stay small).
Tensor make(Shape shape, std::uint32_t& next) {
  std::uint64_t n = 1;
  for (const auto d : shape) n *= d;
  Tensor t{std::move(shape), {}};
  for (std::uint64_t i = 0; i < n; ++i, ++next) {
    t.bytes += static_cast<char>(next & 0xFF);
    t.bytes += static_cast<char>((next >> 8) & 0xFF);
  }
  return t;
}

// Rows [begin, end) of dim 0.
Tensor rows(const Tensor& t, std::uint64_t begin, std::uint64_t end) {
  Tensor r{t.shape, t.bytes.substr(begin * t.row_bytes(), (end - begin) * t.row_bytes())};
  r.shape[0] = end - begin;
  return r;
}

// Columns [begin, end) of dim 1 of a 2-D tensor.
Tensor columns(const Tensor& t, std::uint64_t begin, std::uint64_t end) {
  Tensor c{{t.shape[0], end - begin}, {}};
  for (std::uint64_t r = 0; r < t.shape[0]; ++r)
    c.bytes += t.bytes.substr((r * t.shape[1] + begin) * 2, (end - begin) * 2);
  return c;
}

// Block `rank` of `mp` equal row (dim 0) or column (dim 1) blocks.
Tensor block(const Tensor& t, int dim, std::uint64_t rank, std::uint64_t mp) {
  const std::uint64_t n = t.shape[static_cast<std::size_t>(dim)] / mp;
  return dim == 0 ? rows(t, rank * n, rank * n + n) : columns(t, rank * n, rank * n + n);
}

// Concatenation along dim 0.
Tensor cat(const std::vector<Tensor>& parts) {
  Tensor c{parts.front().shape, {}};
  c.shape[0] = 0;
  for (const Tensor& p : parts) {
    c.shape[0] += p.shape[0];
    c.bytes += p.bytes;
  }
  return c;
}

// Stacked along a new dim 0.
Tensor stack(const std::vector<Tensor>& parts) {
  Tensor s{parts.front().shape, {}};
  s.shape.insert(s.shape.begin(), parts.size());
  for (const Tensor& p : parts) s.bytes += p.bytes;
  return s;
}

// One safetensors file, written from the format's definition.
void write_safetensors(const fs::path& path, const Tensors& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    header[name] = {
        {"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  for (std::size_t i = 0; i < 8; ++i) file[i] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  write_file(path, file + text + data);
}

// The checkpoint's config.json, which the example rules read their head and expert counts from.
void write_config(const fs::path& dir, const nlohmann::json& config) {
  write_file(dir / "config.json", config.dump());
}

// Every tensor of every rank file: "FILE:NAME" -> tensor (BF16 checked).
Tensors read_outputs(const fs::path& folder) {
  Tensors tensors;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() != ".safetensors") continue;
    for (auto& [name, t] : parse_safetensors(read_file(entry.path()))) {
      REQUIRE(t.dtype == "BF16");
      tensors[entry.path().filename().string() + ":" + name] = Tensor{t.shape, std::move(t.bytes)};
    }
  }
  return tensors;
}

// Each expected tensor present with its shape and bytes, and nothing else.
void compare(const Tensors& expected, const Tensors& actual) {
  for (const auto& [name, t] : expected) {
    INFO(name);
    const auto found = actual.find(name);
    REQUIRE(found != actual.end());
    CHECK(found->second.shape == t.shape);
    CHECK(found->second.bytes == t.bytes);
  }
  for (const auto& [name, t] : actual) {
    INFO(name);
    CHECK(expected.count(name) == 1);
  }
}

}  // namespace shardwise::test::bf16
