#include <shardwise/convert/manifest.hpp>

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/convert/checksum.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/header.hpp>
#include <shardwise/safetensors/writer.hpp>

#include "convert/atomic_file.hpp"
#include "core/io.hpp"

namespace shardwise::convert {

using Json = nlohmann::ordered_json;

std::uint64_t input_headers_xxh3(const plan::Plan& plan) {
  Hasher hasher;
  std::vector<std::byte> buffer(1 << 20);
  for (const std::string& path : plan.input_files) {
    io::ReadOnlyFile file(path);
    std::array<std::byte, 8> prefix{};
    io::pread_exact(file.fd(), path, 0, prefix);
    std::uint64_t header_bytes = 0;
    for (std::size_t i = 0; i < 8; ++i) header_bytes |= std::to_integer<std::uint64_t>(prefix[i]) << (8 * i);
    if (header_bytes > st::kMaxHeaderBytes || header_bytes > file.size() - 8) {
      throw Error(ErrorKind::input, fmt::format("{}: header length {} does not fit the file", path, header_bytes));
    }
    hasher.update(std::filesystem::path(path).filename().string());
    hasher.update(std::string_view("\0", 1));
    hasher.update(prefix);
    for (std::uint64_t done = 0; done < header_bytes;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), header_bytes - done));
      io::pread_exact(file.fd(), path, 8 + done, std::span(buffer).first(n));
      hasher.update(std::span(buffer).first(n));
      done += n;
    }
  }
  return hasher.digest();
}

Manifest provisional_manifest(const plan::Plan& plan, const RulesIdentity& rules, std::uint64_t headers_xxh3) {
  Manifest manifest;
  manifest.rules = rules;
  manifest.input_headers_xxh3 = headers_xxh3;
  manifest.params = plan.params;
  for (const plan::OutputFile& output : plan.outputs) manifest.outputs.push_back({output.rank, output.file, 0, 0, {}});
  for (const std::string& side : plan::extra_file_names(plan)) manifest.side_files.push_back({side, 0});
  return manifest;
}

Json manifest_to_json(const Manifest& manifest) {
  Json json;
  json["shardwise_manifest"] = kManifestVersion;
  json["tool"] = manifest.tool;
  json["complete"] = manifest.complete;
  json["rules"] = {{"name", manifest.rules.name}, {"xxh3", xxh3_hex(manifest.rules.xxh3)}};
  json["input"] = {{"headers_xxh3", xxh3_hex(manifest.input_headers_xxh3)}, {"files", Json::array()}};
  for (const ManifestInput& input : manifest.inputs) {
    json["input"]["files"].push_back({{"file", input.file},
                                      {"bytes", input.identity.bytes},
                                      {"mtime_ns", input.identity.mtime_ns},
                                      {"ctime_ns", input.identity.ctime_ns},
                                      {"inode", input.identity.inode}});
  }
  json["params"] = Json::object();
  for (const auto& [name, value] : manifest.params) json["params"][name] = value;
  json["outputs"] = Json::array();
  for (const ManifestOutput& output : manifest.outputs) {
    Json entry = {{"rank", output.rank}, {"file", output.file}};
    if (has_checksums(manifest, output)) {
      entry["bytes"] = output.bytes;
      entry["xxh3"] = xxh3_hex(output.xxh3);
      entry["tensors"] = Json::array();
      for (const ManifestTensor& t : output.tensors) entry["tensors"].push_back({{"name", t.name}, {"xxh3", xxh3_hex(t.xxh3)}});
    }
    json["outputs"].push_back(std::move(entry));
  }
  json["side_files"] = Json::array();
  for (const ManifestSideFile& side : manifest.side_files) {
    Json entry = {{"file", side.file}};
    if (has_checksums(manifest, side)) entry["xxh3"] = xxh3_hex(side.xxh3);
    json["side_files"].push_back(std::move(entry));
  }
  return json;
}

namespace {

// Reading helpers: every missing or mistyped field is an Error(input) naming the field.
struct Reader {
  const std::string& where;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::input, fmt::format("{}: not a shardwise manifest: {}", where, what));
  }
  const Json& field(const Json& object, const char* key) const {
    if (!object.is_object() || !object.contains(key)) fail(fmt::format("missing \"{}\"", key));
    return object.at(key);
  }
  std::string text(const Json& object, const char* key) const {
    const Json& value = field(object, key);
    if (!value.is_string()) fail(fmt::format("\"{}\" is not a string", key));
    return value.get<std::string>();
  }
  std::uint64_t number(const Json& object, const char* key) const {
    const Json& value = field(object, key);
    if (!value.is_number_unsigned()) fail(fmt::format("\"{}\" is not a non-negative integer", key));
    return value.get<std::uint64_t>();
  }
  std::int64_t signed_number(const Json& object, const char* key) const {
    const Json& value = field(object, key);
    if (!value.is_number_integer()) fail(fmt::format("\"{}\" is not an integer", key));
    return value.get<std::int64_t>();
  }
  std::uint64_t digest(const Json& object, const char* key) const {
    const auto value = parse_xxh3_hex(text(object, key));
    if (!value) fail(fmt::format("\"{}\" is not 16 hex digits", key));
    return *value;
  }
  const Json& array(const Json& object, const char* key) const {
    const Json& value = field(object, key);
    if (!value.is_array()) fail(fmt::format("\"{}\" is not a list", key));
    return value;
  }
};

}  // namespace

Manifest manifest_from_json(const Json& json, const std::string& where) {
  const Reader r{where};
  const std::uint64_t version = r.number(json, "shardwise_manifest");
  if (version == 0 || version > kManifestVersion) r.fail(fmt::format("unknown version {}", version));
  Manifest manifest;
  manifest.tool = r.text(json, "tool");
  const Json& complete = r.field(json, "complete");
  if (!complete.is_boolean()) r.fail("\"complete\" is not true or false");
  manifest.complete = complete.get<bool>();
  manifest.rules = {r.text(r.field(json, "rules"), "name"), r.digest(r.field(json, "rules"), "xxh3")};
  const Json& input = r.field(json, "input");
  manifest.input_headers_xxh3 = r.digest(input, "headers_xxh3");
  if (version >= 2) {
    for (const Json& entry : r.array(input, "files")) {
      manifest.inputs.push_back({r.text(entry, "file"),
                                 {r.number(entry, "bytes"), r.signed_number(entry, "mtime_ns"),
                                  r.signed_number(entry, "ctime_ns"), r.number(entry, "inode")}});
    }
  }
  const Json& params = r.field(json, "params");
  if (!params.is_object()) r.fail("\"params\" is not an object");
  for (const auto& [name, value] : params.items()) manifest.params[name] = r.number(params, name.c_str());
  for (const Json& entry : r.array(json, "outputs")) {
    ManifestOutput output{r.number(entry, "rank"), r.text(entry, "file"), 0, 0, {}};
    if (manifest.complete || entry.contains("xxh3")) {
      output.finished = !manifest.complete;
      output.bytes = r.number(entry, "bytes");
      output.xxh3 = r.digest(entry, "xxh3");
      for (const Json& t : r.array(entry, "tensors")) output.tensors.push_back({r.text(t, "name"), r.digest(t, "xxh3")});
    }
    manifest.outputs.push_back(std::move(output));
  }
  for (const Json& entry : r.array(json, "side_files")) {
    const bool checksum = manifest.complete || entry.contains("xxh3");
    manifest.side_files.push_back(
        {r.text(entry, "file"), checksum ? r.digest(entry, "xxh3") : 0, checksum && !manifest.complete});
  }
  return manifest;
}

std::optional<Manifest> read_manifest(const std::string& folder) {
  return read_manifest_file((std::filesystem::path(folder) / kManifestFileName).string());
}

std::optional<Manifest> read_manifest_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::nullopt;
    throw Error(ErrorKind::io, fmt::format("cannot read {}", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  const Json json = Json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) throw Error(ErrorKind::input, fmt::format("{}: not a shardwise manifest: invalid JSON", path));
  return manifest_from_json(json, path);
}

// Written as text rather than through a JSON DOM: a full-size model has 100,000s of tensors, one
// line each here, which keeps the file diffable and the memory small.
std::string format_manifest(const Manifest& manifest) {
  const auto quote = [](const std::string& text) { return Json(text).dump(); };
  Json head = manifest_to_json(Manifest{manifest.complete,
                                        manifest.tool,
                                        manifest.rules,
                                        manifest.input_headers_xxh3,
                                        manifest.inputs,
                                        manifest.params,
                                        {},
                                        {}});
  std::string text = head.dump();
  text.resize(text.size() - std::string_view(R"(,"outputs":[],"side_files":[]})").size());
  text += ",\n\"outputs\": [";
  for (std::size_t i = 0; i < manifest.outputs.size(); ++i) {
    const ManifestOutput& out = manifest.outputs[i];
    text += fmt::format("{}\n {{\"rank\": {}, \"file\": {}", i ? "," : "", out.rank, quote(out.file));
    if (has_checksums(manifest, out)) {
      text += fmt::format(", \"bytes\": {}, \"xxh3\": \"{}\", \"tensors\": [", out.bytes, xxh3_hex(out.xxh3));
      for (std::size_t t = 0; t < out.tensors.size(); ++t) {
        text += fmt::format("{}\n  {{\"name\": {}, \"xxh3\": \"{}\"}}", t ? "," : "", quote(out.tensors[t].name),
                            xxh3_hex(out.tensors[t].xxh3));
      }
      text += "]";
    }
    text += "}";
  }
  text += "],\n\"side_files\": [";
  for (std::size_t i = 0; i < manifest.side_files.size(); ++i) {
    const ManifestSideFile& side = manifest.side_files[i];
    text += fmt::format("{}\n {{\"file\": {}", i ? "," : "", quote(side.file));
    if (has_checksums(manifest, side)) text += fmt::format(", \"xxh3\": \"{}\"", xxh3_hex(side.xxh3));
    text += "}";
  }
  return text + "]}\n";
}

void write_manifest(const std::string& folder, const Manifest& manifest, const std::string& writer) {
  const std::string path = (std::filesystem::path(folder) / kManifestFileName).string();
  const std::string temp = writer.empty()
                               ? st::temp_path_for(path)
                               : (std::filesystem::path(folder) / fmt::format(".{}.{}.partial", kManifestFileName, writer)).string();
  const std::string text = format_manifest(manifest);
  AtomicFile file(path, temp);
  file.write(std::as_bytes(std::span(text)));
  file.commit();
}

std::vector<std::string> plan_changes(const Manifest& before, const Manifest& now) {
  std::vector<std::string> changes;
  if (before.rules.name != now.rules.name || before.rules.xxh3 != now.rules.xxh3) {
    changes.push_back(fmt::format("the rules changed (manifest: {} xxh3 {}, now: {} xxh3 {})", before.rules.name,
                                  xxh3_hex(before.rules.xxh3), now.rules.name, xxh3_hex(now.rules.xxh3)));
  }
  if (before.input_headers_xxh3 != now.input_headers_xxh3) {
    changes.push_back(fmt::format("the input changed (headers xxh3: manifest {}, now {})",
                                  xxh3_hex(before.input_headers_xxh3), xxh3_hex(now.input_headers_xxh3)));
  }
  for (const auto& [name, value] : before.params) {
    const auto it = now.params.find(name);
    if (it == now.params.end()) {
      changes.push_back(fmt::format("the parameter {} is no longer set (manifest: {})", name, value));
    } else if (it->second != value) {
      changes.push_back(fmt::format("the parameter {} changed: {} -> {}", name, value, it->second));
    }
  }
  for (const auto& [name, value] : now.params) {
    if (before.params.count(name) == 0) changes.push_back(fmt::format("the parameter {} is new: {}", name, value));
  }
  return changes;
}

}  // namespace shardwise::convert
