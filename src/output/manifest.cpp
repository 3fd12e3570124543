#include <shardwise/output/manifest.hpp>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/safetensors/header.hpp>
#include <shardwise/safetensors/writer.hpp>

#include <shardwise/core/io.hpp>
#include "output/atomic_file.hpp"

namespace shardwise::output {

using Json = nlohmann::ordered_json;

namespace {

// A manifest lists a line per tensor (100,000s in large checkpoints, ~150 bytes each): a gigabyte
// is far beyond any, and bounds what a planted file can make a run read.
constexpr std::uint64_t kMaxManifestBytes = 1'000'000'000;

}  // namespace

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
      throw Error(ErrorKind::input,
                  fmt::format("{}: header length {} does not fit the file", path, header_bytes));
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

void set_params(Manifest& manifest, const std::map<std::string, std::uint64_t>& values,
                const std::map<std::string, std::vector<std::string>>& words) {
  for (const auto& [name, value] : values) {
    const auto choice = words.find(name);
    if (choice != words.end() && value < choice->second.size()) {
      manifest.choices[name] = choice->second[value];
      manifest.choice_words[name] = choice->second;
    } else {
      manifest.params[name] = value;
    }
  }
}

std::map<std::string, std::string> param_texts(const Manifest& manifest,
                                               const std::map<std::string, std::vector<std::string>>& words) {
  std::map<std::string, std::string> texts(manifest.choices.begin(), manifest.choices.end());
  for (const auto& [name, value] : manifest.params) {
    const auto choice = words.find(name);
    texts[name] = choice != words.end() && value < choice->second.size() ? choice->second[value]
                                                                         : std::to_string(value);
  }
  return texts;
}

std::optional<TensorOrigin> origin_of(const plan::Plan& plan, const plan::PlannedTensor& tensor) {
  if (tensor.source >= plan.sources.size()) return std::nullopt;
  const plan::Source& source = plan.sources[tensor.source];
  TensorOrigin origin{source.name, source.dtype, source.shape};
  if (tensor.permutation < plan.permutations.size()) {
    origin.rows = plan.permutations[tensor.permutation];
    origin.rows->rule = 0;
  }
  const auto label = [&plan](std::size_t rule) {
    return rule < plan.rule_labels.size() ? plan.rule_labels[rule] : std::string("?");
  };
  switch (tensor.cast) {
    case plan::Cast::none:
    case plan::Cast::reinterpret:
      break;
    case plan::Cast::f16_to_bf16:
    case plan::Cast::f32_to_bf16:
      origin.irreversible =
          fmt::format("cast {} -> {} (rounds) of a tensor placed by {}", st::dtype_name(source.dtype),
                      st::dtype_name(tensor.dtype), label(tensor.rule));
      break;
    case plan::Cast::dequantize:
    case plan::Cast::dequantize_packed:
    case plan::Cast::requantize_fp4_weight:
    case plan::Cast::requantize_fp4_scale:
      origin.irreversible =
          fmt::format("{} {} -> {} by {}", plan::cast_name(tensor.cast), st::dtype_name(source.dtype),
                      st::dtype_name(tensor.dtype),
                      label(tensor.companion < plan.companions.size() ? plan.companions[tensor.companion].rule
                                                                      : tensor.rule));
      break;
  }
  // A fused output's parts record their own origins (cut_of); a chunk, the rows it is of its source.
  if (tensor.composite < plan.composites.size()) return std::nullopt;
  if (!source.within.whole()) {
    origin.within = source.within;
    if (!origin.shape.empty()) origin.shape[0] = source.whole_rows;
  }
  if (source.name == tensor.name && source.dtype == tensor.dtype && !origin.rows &&
      origin.irreversible.empty() && origin.within.whole())
    return std::nullopt;
  return origin;
}

Manifest provisional_manifest(const plan::Plan& plan, const RulesIdentity& rules,
                              std::uint64_t headers_xxh3) {
  Manifest manifest;
  manifest.rules = rules;
  manifest.input_headers_xxh3 = headers_xxh3;
  set_params(manifest, plan.params, plan.param_choices);
  if (plan.naming == plan::OutputNaming::hf) {
    manifest.output_layout = "hf";
    manifest.max_shard_size = plan.max_shard_size;
  }
  for (const auto& [name, source] : plan.param_sources) manifest.param_sources[name] = source.text(name);
  manifest.origins = true;  // convert records each tensor's (output::origin_of)
  for (const plan::Skipped& skip : plan.skipped) {
    const auto same = std::find_if(manifest.skipped.begin(), manifest.skipped.end(),
                                   [&](const ManifestSkip& m) { return m.rule == skip.rule; });
    if (same != manifest.skipped.end()) {
      ++same->count;
    } else {
      manifest.skipped.push_back({skip.rule, 1, skip.name});
    }
  }
  for (const plan::OutputFile& output : plan.outputs)
    manifest.outputs.push_back({output.rank, output.file, 0, 0, {}});
  for (const std::string& side : plan::extra_file_names(plan)) manifest.side_files.push_back({side, 0});
  return manifest;
}

TensorCut cut_of(const plan::PlannedTensor& tensor, std::uint64_t rank, std::uint64_t mp) {
  TensorCut cut{tensor.dtype, tensor.shape, tensor.placement, 0, 0, 0};
  const plan::Placement& p = tensor.placement;
  if (p.kind == plan::Placement::Kind::split && p.dim >= 0 &&
      static_cast<std::size_t>(p.dim) < tensor.shape.size()) {
    // Replicas hold one range: mp / replicas ranges in all, rank r taking range r / replicas.
    const std::uint64_t replicas = p.replicas == 0 ? 1 : p.replicas;
    const std::uint64_t ranges = std::max<std::uint64_t>(1, mp / replicas);
    cut.size = tensor.shape[static_cast<std::size_t>(p.dim)] * ranges;  // this rank's part, once per range
    const plan::SplitRange range = plan::split_range(cut.size, rank / replicas, ranges);
    cut.begin = range.begin;
    cut.end = range.end;
  }
  return cut;
}

TensorCut cut_of(const plan::Plan& plan, const plan::PlannedTensor& tensor, std::uint64_t rank) {
  TensorCut cut = cut_of(tensor, rank, plan.model_parallel);
  if (tensor.composite >= plan.composites.size()) return cut;
  const plan::Composite& c = plan.composites[tensor.composite];
  auto composite = std::make_shared<CompositeCut>();
  composite->dim = c.dim;
  composite->stacked = c.stacked;
  composite->per_block = c.per_block;
  composite->indices = c.indices;
  for (const plan::PlannedTensor& part : c.parts) {
    composite->parts.emplace_back(part.name, cut_of(part, rank, plan.model_parallel));
    composite->origins.push_back(origin_of(plan, part));
  }
  cut.composite = std::move(composite);
  return cut;
}

namespace {

Json origin_to_json(const TensorOrigin& origin) {
  Json json = {
      {"name", origin.name}, {"dtype", std::string(st::dtype_name(origin.dtype))}, {"shape", origin.shape}};
  if (origin.rows) {
    json["rows"] = {
        {"to", origin.rows->to == transform::RopeOrder::half_split ? "half_split" : "interleaved"},
        {"heads", origin.rows->heads}};
  }
  if (!origin.irreversible.empty()) json["irreversible"] = origin.irreversible;
  if (!origin.within.whole()) json["within"] = {origin.within.begin, origin.within.end};
  return json;
}

Json cut_to_json(const TensorCut& cut) {
  switch (cut.placement.kind) {
    case plan::Placement::Kind::split: {
      Json json = {{"split", cut.placement.dim},
                   {"begin", cut.begin},
                   {"end", cut.end},
                   {"size", cut.size},
                   {"unit", cut.placement.unit}};
      if (cut.placement.replicas > 1) json["replicas"] = cut.placement.replicas;
      return json;
    }
    case plan::Placement::Kind::owned:
      return {{"owned", cut.placement.index}, {"count", cut.placement.count}};
    case plan::Placement::Kind::composite: {
      Json parts = Json::array();
      if (cut.composite) {
        for (std::size_t i = 0; i < cut.composite->parts.size(); ++i) {
          const auto& [name, part] = cut.composite->parts[i];
          Json entry = {{"name", name},
                        {"dtype", std::string(st::dtype_name(part.dtype))},
                        {"shape", part.shape},
                        {"cut", cut_to_json(part)}};
          if (i < cut.composite->origins.size() && cut.composite->origins[i])
            entry["from"] = origin_to_json(*cut.composite->origins[i]);
          parts.push_back(std::move(entry));
        }
      }
      const CompositeCut none;
      const CompositeCut& c = cut.composite ? *cut.composite : none;
      return {{"composite",
               {{"dim", c.dim},
                {"stacked", c.stacked},
                {"parts_per_block", c.per_block},
                {"indices", c.indices},
                {"parts", parts}}}};
    }
    case plan::Placement::Kind::replicated:
      break;
  }
  return "replicated";
}

// One tensor's entry: name and checksum, then (version 3) dtype, shape and cut, (version 5) origin.
Json tensor_to_json(const ManifestTensor& t) {
  Json entry = {{"name", t.name}, {"xxh3", xxh3_hex(t.xxh3)}};
  if (t.cut) {
    entry["dtype"] = std::string(st::dtype_name(t.cut->dtype));
    entry["shape"] = t.cut->shape;
    entry["cut"] = cut_to_json(*t.cut);
  }
  if (t.origin) entry["from"] = origin_to_json(*t.origin);
  return entry;
}

}  // namespace

Json manifest_to_json(const Manifest& manifest) {
  Json json;
  json["shardwise_manifest"] = kManifestVersion;
  json["tool"] = manifest.tool;
  json["complete"] = manifest.complete;
  json["rules"] = {{"name", manifest.rules.name}, {"xxh3", xxh3_hex(manifest.rules.xxh3)}};
  if (!manifest.rules.output_file.empty()) json["rules"]["output_file"] = manifest.rules.output_file;
  if (!manifest.rules.text.empty()) json["rules"]["text"] = manifest.rules.text;
  json["input"] = {{"headers_xxh3", xxh3_hex(manifest.input_headers_xxh3)}, {"files", Json::array()}};
  for (const ManifestInput& input : manifest.inputs) {
    json["input"]["files"].push_back({{"file", input.file},
                                      {"bytes", input.identity.bytes},
                                      {"mtime_ns", input.identity.mtime_ns},
                                      {"ctime_ns", input.identity.ctime_ns},
                                      {"inode", input.identity.inode}});
  }
  std::map<std::string, Json> params(manifest.params.begin(), manifest.params.end());  // in name order
  params.insert(manifest.choices.begin(), manifest.choices.end());
  json["params"] = Json::object();
  for (const auto& [name, value] : params) json["params"][name] = value;
  if (!manifest.output_layout.empty()) {
    json["output"] = {{"layout", manifest.output_layout}, {"max_shard_size", manifest.max_shard_size}};
  }
  if (!manifest.param_sources.empty()) json["param_sources"] = manifest.param_sources;
  if (manifest.origins) json["origins"] = true;
  if (!manifest.skipped.empty()) {
    json["skipped"] = Json::array();
    for (const ManifestSkip& skip : manifest.skipped)
      json["skipped"].push_back({{"rule", skip.rule}, {"count", skip.count}, {"first", skip.first}});
  }
  json["outputs"] = Json::array();
  for (const ManifestOutput& output : manifest.outputs) {
    Json entry = {{"rank", output.rank}, {"file", output.file}};
    if (has_checksums(manifest, output)) {
      entry["bytes"] = output.bytes;
      entry["xxh3"] = xxh3_hex(output.xxh3);
      entry["tensors"] = Json::array();
      for (const ManifestTensor& t : output.tensors) entry["tensors"].push_back(tensor_to_json(t));
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
  // A name the folder's files are opened or written by: one file directly in the folder.
  std::string file_name(const Json& object, const char* key, std::string_view what) const {
    std::string name = text(object, key);
    if (const std::string problem = file_name_problem(name); !problem.empty()) {
      fail(fmt::format("{} {} is {}: the files it lists must be in its folder", what, Json(name).dump(),
                       problem));
    }
    return name;
  }
  std::string optional_text(const Json& object, const char* key) const {
    return object.is_object() && object.contains(key) ? text(object, key) : std::string();
  }

  // A version 5 tensor entry's origin ("from").
  TensorOrigin origin(const Json& from) const {
    const std::string name = text(from, "name");
    const auto dtype = st::parse_dtype(text(from, "dtype"));
    if (!dtype) fail(fmt::format("{}: unknown dtype in \"from\"", name));
    TensorOrigin result{name, *dtype, {}};
    for (const Json& dim : array(from, "shape")) {
      if (!dim.is_number_unsigned()) fail("\"shape\" holds a value that is not a non-negative integer");
      result.shape.push_back(dim.get<std::uint64_t>());
    }
    if (from.contains("rows")) {
      const Json& rows = field(from, "rows");
      const std::string to = text(rows, "to");
      if (to != "half_split" && to != "interleaved")
        fail(fmt::format("{}: unknown row order '{}'", name, to));
      result.rows = plan::RowPermutation{
          to == "half_split" ? transform::RopeOrder::half_split : transform::RopeOrder::interleaved,
          number(rows, "heads"), 0};
    }
    result.irreversible = optional_text(from, "irreversible");
    if (from.contains("within")) {
      const Json& within = field(from, "within");
      if (!within.is_array() || within.size() != 2 || !within[0].is_number_unsigned() ||
          !within[1].is_number_unsigned() || result.shape.empty() ||
          within[0].get<std::uint64_t>() >= within[1].get<std::uint64_t>() ||
          within[1].get<std::uint64_t>() > result.shape[0])
        fail(fmt::format("{}: \"within\" is not rows [begin, end) of its dim 0", name));
      result.within = plan::Slice{0, within[0].get<std::uint64_t>(), within[1].get<std::uint64_t>()};
    }
    return result;
  }

  // A version 3 tensor entry's dtype, shape and cut.
  TensorCut cut(const Json& entry) const {
    TensorCut result{};
    const auto dtype = st::parse_dtype(text(entry, "dtype"));
    if (!dtype) fail(fmt::format("{}: unknown dtype", text(entry, "name")));
    result.dtype = *dtype;
    for (const Json& dim : array(entry, "shape")) {
      if (!dim.is_number_unsigned()) fail("\"shape\" holds a value that is not a non-negative integer");
      result.shape.push_back(dim.get<std::uint64_t>());
    }
    const Json& c = field(entry, "cut");
    if (c.is_string() && c.get<std::string>() == "replicated") return result;
    if (c.is_object() && c.contains("split")) {
      const std::uint64_t dim = number(c, "split");
      if (dim >= result.shape.size())
        fail(fmt::format("{}: split dim {} outside its shape", text(entry, "name"), dim));
      result.placement = {plan::Placement::Kind::split,
                          static_cast<int>(dim),
                          number(c, "unit"),
                          0,
                          0,
                          c.contains("replicas") ? number(c, "replicas") : 1};
      if (result.placement.replicas == 0) fail(fmt::format("{}: \"replicas\" is 0", text(entry, "name")));
      result.begin = number(c, "begin");
      result.end = number(c, "end");
      result.size = number(c, "size");
      if (result.placement.unit == 0 || result.begin > result.end || result.end > result.size ||
          result.end - result.begin != result.shape[dim]) {
        fail(fmt::format("{}: inconsistent split", text(entry, "name")));
      }
      return result;
    }
    if (c.is_object() && c.contains("owned")) {
      result.placement = {plan::Placement::Kind::owned, -1, 1, number(c, "owned"), number(c, "count")};
      if (result.placement.index >= result.placement.count)
        fail(fmt::format("{}: owner index outside its count", text(entry, "name")));
      return result;
    }
    if (c.is_object() && c.contains("composite")) {
      const Json& spec = field(c, "composite");
      auto composite = std::make_shared<CompositeCut>();
      const std::uint64_t dim = number(spec, "dim");
      if (dim >= result.shape.size())
        fail(fmt::format("{}: composite dim {} outside its shape", text(entry, "name"), dim));
      composite->dim = static_cast<int>(dim);
      const Json& stacked = field(spec, "stacked");
      if (!stacked.is_boolean())
        fail(fmt::format("{}: \"stacked\" is not true or false", text(entry, "name")));
      composite->stacked = stacked.get<bool>();
      composite->per_block = number(spec, "parts_per_block");
      for (const Json& index : array(spec, "indices")) {
        if (!index.is_number_unsigned())
          fail(fmt::format("{}: a composite index is not a number", text(entry, "name")));
        composite->indices.push_back(index.get<std::uint64_t>());
      }
      for (const Json& part : array(spec, "parts")) {
        composite->parts.emplace_back(text(part, "name"), cut(part));
        composite->origins.push_back(part.contains("from") ? std::optional(origin(field(part, "from")))
                                                           : std::nullopt);
      }
      if (composite->per_block == 0 || composite->parts.empty() ||
          composite->parts.size() % composite->per_block != 0)
        fail(fmt::format("{}: inconsistent composite", text(entry, "name")));
      result.placement = {plan::Placement::Kind::composite, -1, 1, 0, 0, 1};
      result.composite = std::move(composite);
      return result;
    }
    fail(fmt::format("{}: \"cut\" is not \"replicated\", a split, an owner or a composite",
                     text(entry, "name")));
  }

  // A tensor entry: name and checksum, from version 3 its cut when it has one, from version 5 its
  // origin ("from") when it has one.
  ManifestTensor tensor(const Json& entry, std::uint64_t version) const {
    std::optional<TensorCut> tensor_cut;
    if (version >= 3 && entry.contains("cut")) tensor_cut = cut(entry);
    std::optional<TensorOrigin> tensor_origin;
    if (version >= 5 && entry.contains("from")) tensor_origin = origin(field(entry, "from"));
    return {text(entry, "name"), digest(entry, "xxh3"), std::move(tensor_cut), std::move(tensor_origin)};
  }
};

// The tensors of outputs[i], read while parsing (see read_manifest_file), by output index.
using TakenTensors = std::vector<std::vector<ManifestTensor>>;

Manifest manifest_from(const Json& json, const std::string& where, TakenTensors* taken);

}  // namespace

Manifest manifest_from_json(const Json& json, const std::string& where) {
  return manifest_from(json, where, nullptr);
}

namespace {

// `taken`: tensors already read out of `json` (their objects dropped from it), which come first in
// their output's list.
Manifest manifest_from(const Json& json, const std::string& where, TakenTensors* taken) {
  const Reader r{where};
  const std::uint64_t version = r.number(json, "shardwise_manifest");
  if (version == 0 || version > kManifestVersion) r.fail(fmt::format("unknown version {}", version));
  Manifest manifest;
  manifest.tool = r.text(json, "tool");
  const Json& complete = r.field(json, "complete");
  if (!complete.is_boolean()) r.fail("\"complete\" is not true or false");
  manifest.complete = complete.get<bool>();
  const Json& rules = r.field(json, "rules");
  manifest.rules = {r.text(rules, "name"), r.digest(rules, "xxh3"), r.optional_text(rules, "output_file"),
                    r.optional_text(rules, "text")};
  const Json& input = r.field(json, "input");
  manifest.input_headers_xxh3 = r.digest(input, "headers_xxh3");
  if (version >= 2) {
    for (const Json& entry : r.array(input, "files")) {
      manifest.inputs.push_back({r.text(entry, "file"),
                                 {r.number(entry, "bytes"), r.signed_number(entry, "mtime_ns"),
                                  r.signed_number(entry, "ctime_ns"), r.number(entry, "inode")}});
    }
  }
  manifest.origins = version >= 5 && json.contains("origins") && json.at("origins") == true;
  manifest.version = version;
  if (version >= 5 && json.contains("skipped")) {
    for (const Json& entry : r.array(json, "skipped"))
      manifest.skipped.push_back({r.text(entry, "rule"), r.number(entry, "count"), r.text(entry, "first")});
  }
  const Json& params = r.field(json, "params");
  if (!params.is_object()) r.fail("\"params\" is not an object");
  for (const auto& [name, value] : params.items()) {
    if (value.is_string()) {
      manifest.choices[name] = value.get<std::string>();  // a choice by its word (version 4)
    } else {
      manifest.params[name] = r.number(params, name.c_str());
    }
  }
  if (json.contains("output")) {
    const Json& output = r.field(json, "output");
    manifest.output_layout = r.text(output, "layout");
    if (manifest.output_layout != "hf")
      r.fail(fmt::format("unknown output layout \"{}\"", manifest.output_layout));
    manifest.max_shard_size = r.number(output, "max_shard_size");
  }
  if (const auto sources = json.find("param_sources"); sources != json.end() && sources->is_object()) {
    for (const auto& [name, source] : sources->items()) {
      if (source.is_string()) manifest.param_sources[name] = source.get<std::string>();
    }
  }
  for (const Json& entry : r.array(json, "outputs")) {
    ManifestOutput output{r.number(entry, "rank"), r.file_name(entry, "file", "output file"), 0, 0, {}};
    if (manifest.complete || entry.contains("xxh3")) {
      output.finished = !manifest.complete;
      output.bytes = r.number(entry, "bytes");
      output.xxh3 = r.digest(entry, "xxh3");
      const Json& tensors = r.array(entry, "tensors");
      if (taken != nullptr && taken->size() > manifest.outputs.size())
        output.tensors = std::move((*taken)[manifest.outputs.size()]);
      for (const Json& t : tensors) output.tensors.push_back(r.tensor(t, version));
    }
    manifest.outputs.push_back(std::move(output));
  }
  for (const Json& entry : r.array(json, "side_files")) {
    const bool checksum = manifest.complete || entry.contains("xxh3");
    manifest.side_files.push_back({r.file_name(entry, "file", "side file"),
                                   checksum ? r.digest(entry, "xxh3") : 0, checksum && !manifest.complete});
  }
  return manifest;
}

}  // namespace

std::vector<std::string> file_list_problems(const Manifest& manifest) {
  std::vector<std::string> problems;
  if (manifest.outputs.empty()) problems.emplace_back("lists no output file");
  const auto mp_entry = manifest.params.find("mp");
  if (mp_entry == manifest.params.end() || mp_entry->second == 0 ||
      mp_entry->second > plan::kMaxModelParallel) {
    problems.push_back(
        mp_entry == manifest.params.end()
            ? std::string("records no model parallelism (parameter mp)")
            : fmt::format("records mp={}, not between 1 and {}", mp_entry->second, plan::kMaxModelParallel));
    return problems;
  }
  const std::uint64_t mp = mp_entry->second;
  const std::string& pattern = manifest.rules.output_file;
  // Mirrored output (no pattern, mp=1): one entry per input file, numbered as positions.
  const bool mirrored = pattern.empty() && mp == 1;
  if (!mirrored && manifest.outputs.size() != mp) {
    problems.push_back(fmt::format("lists {} rank files for mp={}", manifest.outputs.size(), mp));
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < manifest.outputs.size(); ++i) {
    const ManifestOutput& out = manifest.outputs[i];
    if (!names.insert(out.file).second) problems.push_back(fmt::format("lists {} more than once", out.file));
    if (out.rank != i) {
      problems.push_back(fmt::format("entry {} is rank {} ({}), expected rank {}", i, out.rank, out.file, i));
    } else if (!pattern.empty() && i < mp && out.file != rules::expand_output_file(pattern, i, mp)) {
      problems.push_back(fmt::format("entry {} is rank {} file {}, expected rank {} file {}", i, out.rank,
                                     out.file, i, rules::expand_output_file(pattern, i, mp)));
    }
  }
  for (const ManifestSideFile& side : manifest.side_files) {
    if (!names.insert(side.file).second)
      problems.push_back(fmt::format("lists {} more than once", side.file));
  }
  return problems;
}

namespace {

// A manifest file's bytes for the JSON parser, read a MiB at a time: a full-size model's manifest
// is 50+ MB, and its text held whole while its entries are built was a large part of the peak
// memory of `verify` and `reshard`. An input iterator; two iterators are equal at the same offset.
class ManifestBytes {
 public:
  ManifestBytes(const io::ReadOnlyFile& file, std::uint64_t size) : file_(file), size_(size) {}

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = char;
    using difference_type = std::ptrdiff_t;
    using pointer = const char*;
    using reference = char;

    iterator() = default;
    iterator(ManifestBytes* bytes, std::uint64_t at) : bytes_(bytes), at_(at) {}
    char operator*() const { return bytes_->at(at_); }
    iterator& operator++() {
      ++at_;
      return *this;
    }
    iterator operator++(int) {
      iterator before = *this;
      ++at_;
      return before;
    }
    bool operator==(const iterator& other) const noexcept { return at_ == other.at_; }

   private:
    ManifestBytes* bytes_ = nullptr;
    std::uint64_t at_ = 0;
  };

  iterator begin() { return {this, 0}; }
  iterator end() { return {this, size_}; }

 private:
  static constexpr std::size_t kChunk = 1 << 20;

  char at(std::uint64_t offset) {
    if (offset - start_ >= length_) {
      start_ = offset;
      length_ = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, size_ - offset));
      io::pread_exact(file_.fd(), file_.path(), offset,
                      std::as_writable_bytes(std::span(buffer_.data(), length_)));
    }
    return buffer_[static_cast<std::size_t>(offset - start_)];
  }

  const io::ReadOnlyFile& file_;
  std::uint64_t size_;
  std::vector<char> buffer_ = std::vector<char>(kChunk);
  std::uint64_t start_ = 0;
  std::size_t length_ = 0;
};

// Where parse_taking_tensors hands the tensors it takes: with the index of their output entry and
// that entry's file name (as written: manifest_from checks it).
using TensorSink = std::function<void(std::size_t output, const std::string& file, ManifestTensor&& tensor)>;

// A manifest's document, and whether its tensor entries were taken out of it.
struct Parsed {
  Json json;
  bool taken = true;
};

// Parses a manifest's text without holding a DOM of its tensor entries (a full-size model's would
// take 100s of MB): each object of outputs[i].tensors goes to `sink` as it closes and is dropped
// from the document. When anything is unusual (no version before the outputs, a key twice, a
// tensor before its entry's file name, an entry that does not read), the text is parsed again
// whole (`taken` false; `sink` may have had some of its tensors), so that messages and the
// treatment of odd files stay those of manifest_from_json.
Parsed parse_taking_tensors(ManifestBytes& text, const std::string& path, const TensorSink& sink) {
  enum class Kind : char { object, array };
  const Reader r{path};
  std::uint64_t version = 0;
  bool usual = true;
  std::vector<Kind> kinds;        // of the open containers, by depth
  std::vector<std::string> keys;  // keys[d]: the key being read in the object at depth d - 1
  std::size_t outputs_keys = 0;
  std::size_t entries = 0;       // output entries begun
  std::size_t tensors_keys = 0;  // in the current output entry
  std::size_t file_keys = 0;     // in the current output entry
  std::optional<std::string> file;
  // The container at `depth` (2: an output entry, 4: a tensor entry) is inside outputs[i].
  const auto in_entry = [&](std::size_t depth) {
    return kinds.size() > depth && keys.size() > 1 && keys[1] == "outputs" && kinds[1] == Kind::array &&
           kinds[2] == Kind::object &&
           (depth == 2 ||
            (keys.size() > 3 && keys[3] == "tensors" && kinds[3] == Kind::array && kinds[4] == Kind::object));
  };
  const Json::parser_callback_t take = [&](int signed_depth, Json::parse_event_t event, Json& parsed) {
    const auto depth = static_cast<std::size_t>(signed_depth);
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        kinds.resize(depth + 1);
        kinds[depth] = event == Json::parse_event_t::object_start ? Kind::object : Kind::array;
        if (depth == 2 && in_entry(2)) {
          ++entries;
          tensors_keys = 0;
          file_keys = 0;
          file.reset();
        }
        return true;
      case Json::parse_event_t::key:
        keys.resize(depth + 1);
        keys[depth] = parsed.get<std::string>();
        if (depth == 1 && keys[1] == "outputs" && ++outputs_keys > 1) usual = false;
        if (depth == 3 && in_entry(2) && keys[3] == "tensors" && ++tensors_keys > 1) usual = false;
        if (depth == 3 && in_entry(2) && keys[3] == "file" && ++file_keys > 1) usual = false;
        return true;
      case Json::parse_event_t::value:
        if (depth == 1 && keys.size() > 1 && keys[1] == "shardwise_manifest" && parsed.is_number_unsigned())
          version = parsed.get<std::uint64_t>();
        if (depth == 3 && in_entry(2) && keys.size() > 3 && keys[3] == "file" && parsed.is_string())
          file = parsed.get<std::string>();
        return true;
      case Json::parse_event_t::object_end:
        if (depth != 4 || !usual || !in_entry(4)) return true;
        // No known version before the outputs (a writer that sorts keys puts it after them), or
        // no file name before the tensors: read whole.
        if (version == 0 || version > kManifestVersion || !file) {
          usual = false;
          return true;
        }
        try {
          sink(entries - 1, *file, r.tensor(parsed, version));
          return false;  // read: dropped from the document
        } catch (const Error&) {
          usual = false;  // manifest_from_json words it, in its order
          return true;
        }
      case Json::parse_event_t::array_end:
        return true;
    }
    return true;
  };
  Json json = Json::parse(text.begin(), text.end(), take, /*allow_exceptions=*/false);
  if (usual) return {std::move(json), true};
  return {Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false), false};
}

// The manifest file at `path` for parse_taking_tensors: nullopt when there is none.
std::optional<Parsed> parse_manifest_file(const std::string& path, const TensorSink& sink) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  // A FIFO or device in its place is refused before it is read (it could block forever).
  std::optional<io::ReadOnlyFile> opened;
  try {
    opened.emplace(path, ErrorKind::input, "the manifest");
  } catch (const Error&) {
    // Removed since it was seen: none after all (a fragment another process folded in).
    if (!std::filesystem::exists(path, ec) && !ec) return std::nullopt;
    throw;
  }
  const io::ReadOnlyFile& file = *opened;
  const std::uint64_t size = file.size();
  if (size > kMaxManifestBytes)
    throw Error(ErrorKind::input,
                fmt::format("{}: the manifest is larger than {} bytes", path, kMaxManifestBytes));
  ManifestBytes text(file, size);
  Parsed parsed = parse_taking_tensors(text, path, sink);
  if (parsed.json.is_discarded())
    throw Error(ErrorKind::input, fmt::format("{}: not a shardwise manifest: invalid JSON", path));
  return parsed;
}

}  // namespace

std::optional<Manifest> read_manifest(const std::string& folder) {
  return read_manifest_file((std::filesystem::path(folder) / kManifestFileName).string());
}

std::optional<Manifest> read_manifest_file(const std::string& path) {
  TakenTensors taken;
  std::optional<Parsed> parsed =
      parse_manifest_file(path, [&](std::size_t output, const std::string&, ManifestTensor&& tensor) {
        if (taken.size() <= output) taken.resize(output + 1);
        taken[output].push_back(std::move(tensor));
      });
  if (!parsed) return std::nullopt;
  if (!parsed->taken) taken.clear();
  return manifest_from(parsed->json, path, &taken);
}

std::optional<Manifest> read_manifest(const std::string& folder, const TensorVisitor& visitor) {
  return read_manifest_file((std::filesystem::path(folder) / kManifestFileName).string(), visitor);
}

std::optional<Manifest> read_manifest_file(const std::string& path, const TensorVisitor& visitor) {
  std::optional<Parsed> parsed = parse_manifest_file(path, visitor.tensor);
  if (!parsed) return std::nullopt;
  Manifest manifest = manifest_from(parsed->json, path, nullptr);
  if (parsed->taken) return manifest;
  // Read whole after all: its tensors are handed over again, from the first.
  if (visitor.restart) visitor.restart();
  for (std::size_t i = 0; i < manifest.outputs.size(); ++i) {
    ManifestOutput& output = manifest.outputs[i];
    for (ManifestTensor& tensor : output.tensors) visitor.tensor(i, output.file, std::move(tensor));
    output.tensors = {};
  }
  return manifest;
}

std::optional<Manifest> read_manifest_without_tensors(const std::string& folder) {
  return read_manifest(folder, {[](std::size_t, const std::string&, ManifestTensor&&) {}});
}

Manifest without_entries(const Manifest& manifest) {
  return Manifest{manifest.complete,
                  manifest.tool,
                  manifest.rules,
                  manifest.input_headers_xxh3,
                  manifest.inputs,
                  manifest.params,
                  {},
                  {},
                  manifest.choices,
                  manifest.choice_words,
                  manifest.output_layout,
                  manifest.max_shard_size,
                  manifest.param_sources,
                  manifest.skipped,
                  manifest.origins};
}

// Written as text rather than through a JSON DOM: a full-size model has 100,000s of tensors, one
// line each here, which keeps the file diffable and the memory small. The text goes to `sink` a
// tensor line at a time, so that writing it never holds all of it.
std::string format_manifest_head(const Manifest& manifest) {
  std::string text = manifest_to_json(without_entries(manifest)).dump();
  text.resize(text.size() - std::string_view(R"(,"outputs":[],"side_files":[]})").size());
  return text + ",\n\"outputs\": [";
}

std::string format_entry_opening(const ManifestOutput& out) {
  return fmt::format("\n {{\"rank\": {}, \"file\": {}, \"bytes\": {}, \"xxh3\": \"{}\", \"tensors\": [",
                     out.rank, Json(out.file).dump(), out.bytes, xxh3_hex(out.xxh3));
}

// One tensor's line, after `text` (the entry's start, or nothing).
void format_tensor_line(std::string& text, const ManifestTensor& tensor, bool first) {
  text += fmt::format("{}\n  {{\"name\": {}, \"xxh3\": \"{}\"", first ? "" : ",", Json(tensor.name).dump(),
                      xxh3_hex(tensor.xxh3));
  if (tensor.cut) {
    text += fmt::format(", \"dtype\": \"{}\", \"shape\": {}, \"cut\": {}", st::dtype_name(tensor.cut->dtype),
                        Json(tensor.cut->shape).dump(), cut_to_json(*tensor.cut).dump());
  }
  if (tensor.origin) text += fmt::format(", \"from\": {}", origin_to_json(*tensor.origin).dump());
  text += "}";
}

namespace {

// The entry, its tensors' lines from `tensor(t)` for t < count when `checksums`.
template <typename TensorAt>
void format_entry(const ManifestOutput& out, bool checksums, std::size_t count, TensorAt&& tensor,
                  const std::function<void(std::string_view)>& sink) {
  if (!checksums) {
    sink(fmt::format("\n {{\"rank\": {}, \"file\": {}}}", out.rank, Json(out.file).dump()));
    return;
  }
  std::string text = format_entry_opening(out);
  for (std::size_t t = 0; t < count; ++t) {
    format_tensor_line(text, tensor(t), t == 0);
    sink(text);
    text.clear();
  }
  sink(text + std::string(kEntryClosing));
}

}  // namespace

void format_output_entry(const ManifestOutput& out, bool checksums,
                         const std::function<void(std::string_view)>& sink) {
  format_entry(
      out, checksums, out.tensors.size(),
      [&](std::size_t t) -> const ManifestTensor& { return out.tensors[t]; }, sink);
}

void format_output_entry(const ManifestOutput& out, const TensorLines& tensors,
                         const std::function<void(std::string_view)>& sink) {
  format_entry(out, true, tensors.count, tensors.tensor, sink);
}

std::string format_manifest_tail(const Manifest& manifest) {
  std::string text = "],\n\"side_files\": [";
  for (std::size_t i = 0; i < manifest.side_files.size(); ++i) {
    const ManifestSideFile& side = manifest.side_files[i];
    text += fmt::format("{}\n {{\"file\": {}", i ? "," : "", Json(side.file).dump());
    if (has_checksums(manifest, side)) text += fmt::format(", \"xxh3\": \"{}\"", xxh3_hex(side.xxh3));
    text += "}";
  }
  return text + "]}\n";
}

void format_manifest(const Manifest& manifest, const std::function<void(std::string_view)>& sink) {
  sink(format_manifest_head(manifest));
  for (std::size_t i = 0; i < manifest.outputs.size(); ++i) {
    if (i != 0) sink(",");
    format_output_entry(manifest.outputs[i], has_checksums(manifest, manifest.outputs[i]), sink);
  }
  sink(format_manifest_tail(manifest));
}

std::string format_manifest(const Manifest& manifest) {
  std::string text;
  format_manifest(manifest, [&](std::string_view part) { text += part; });
  return text;
}

void write_manifest_file(AtomicFile& file, const Manifest& manifest) {
  constexpr std::size_t kFlushBytes = 1 << 20;
  std::string buffer;
  const auto flush = [&] {
    file.write(std::as_bytes(std::span(buffer)));
    buffer.clear();
  };
  format_manifest(manifest, [&](std::string_view part) {
    buffer += part;
    if (buffer.size() >= kFlushBytes) flush();
  });
  flush();
  file.commit();
}

std::string manifest_temp_path(const std::string& folder, const std::string& writer) {
  const std::filesystem::path path = std::filesystem::path(folder) / kManifestFileName;
  return writer.empty()
             ? st::temp_path_for(path.string())
             : (path.parent_path() / fmt::format(".{}.{}.partial", kManifestFileName, writer)).string();
}

void write_manifest(const std::string& folder, const Manifest& manifest, const std::string& writer) {
  AtomicFile file((std::filesystem::path(folder) / kManifestFileName).string(),
                  manifest_temp_path(folder, writer));
  write_manifest_file(file, manifest);
}

namespace {

// "Hugging Face's shards of at most 5000000000 bytes", "Hugging Face's files mirroring the input's", or
// "the rules' files".
std::string output_layout_text(const Manifest& manifest) {
  if (manifest.output_layout != "hf") return "the rules' files";
  return manifest.max_shard_size == 0
             ? std::string("Hugging Face's files mirroring the input's")
             : fmt::format("Hugging Face's shards of at most {} bytes", manifest.max_shard_size);
}

}  // namespace

std::vector<std::string> plan_changes(const Manifest& before, const Manifest& now, const plan::Plan* shown) {
  const std::map<std::string, std::vector<std::string>>& words =
      shown ? shown->param_choices : now.choice_words;
  const std::map<std::string, std::string> before_params = param_texts(before, words);
  const std::map<std::string, std::string> now_params = param_texts(now, words);
  std::vector<std::string> changes;
  if (before.rules.name != now.rules.name || before.rules.xxh3 != now.rules.xxh3) {
    changes.push_back(fmt::format("the rules changed (manifest: {} xxh3 {}, now: {} xxh3 {})",
                                  before.rules.name, xxh3_hex(before.rules.xxh3), now.rules.name,
                                  xxh3_hex(now.rules.xxh3)));
  }
  if (before.input_headers_xxh3 != now.input_headers_xxh3) {
    changes.push_back(fmt::format("the input changed (headers xxh3: manifest {}, now {})",
                                  xxh3_hex(before.input_headers_xxh3), xxh3_hex(now.input_headers_xxh3)));
  }
  if (before.output_layout != now.output_layout || before.max_shard_size != now.max_shard_size) {
    changes.push_back(fmt::format("the output layout changed: {} -> {}", output_layout_text(before),
                                  output_layout_text(now)));
  }
  for (const auto& [name, value] : before_params) {
    const auto it = now_params.find(name);
    if (it == now_params.end()) {
      changes.push_back(fmt::format("the parameter {} is no longer set (manifest: {})", name, value));
    } else if (it->second != value) {
      changes.push_back(fmt::format("the parameter {} changed: {} -> {}", name, value, it->second));
    }
  }
  for (const auto& [name, value] : now_params) {
    if (before_params.count(name) == 0)
      changes.push_back(fmt::format("the parameter {} is new: {}", name, value));
  }
  return changes;
}

}  // namespace shardwise::output
