#include "safetensors/index.hpp"

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/core/paths.hpp>

#include <shardwise/core/io.hpp>
#include <shardwise/safetensors/utf8.hpp>
#include "safetensors/header_json.hpp"
#include "safetensors/json_scan.hpp"
#include "safetensors/name_order.hpp"

namespace shardwise::st::detail {

namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMaxIndexBytes = 1'000'000'000;
constexpr int kMaxIndexDepth = 64;

// Sorts the files by name and renumbers the entries to match; then sorts the entries by name.
// Returns false when a tensor is mapped twice.
bool sort_weight_map(WeightMap& map) {
  std::vector<std::uint32_t> order(map.files.size());  // files by name
  for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::uint32_t a, std::uint32_t b) { return map.files[a] < map.files[b]; });
  std::vector<std::uint32_t> rank(order.size());
  std::vector<std::string> files;
  files.reserve(order.size());
  for (std::uint32_t r = 0; r < order.size(); ++r) {
    rank[order[r]] = r;
    files.push_back(std::move(map.files[order[r]]));
  }
  map.files = std::move(files);
  for (auto& e : map.tensors) e.file = rank[e.file];
  sort_runs(map.tensors,
            [&](const WeightMap::Entry& a, const WeightMap::Entry& b) { return map.name(a) < map.name(b); });
  for (std::size_t i = 1; i < map.tensors.size(); ++i) {
    if (map.name(map.tensors[i - 1]) == map.name(map.tensors[i])) return false;
  }
  return true;
}

// The fast path: `{"weight_map": {str: str}, key: value}`, top-level keys once each, strings
// without escapes, other values plain (strings, integers, literals, arrays and objects of them,
// nested at most kMaxSkipDepth deep). Anything else, or any problem, declines (nullopt).
class IndexReader {
 public:
  explicit IndexReader(std::string_view text) : text_(text), in_(text) {}

  bool read(WeightMap& map) {
    if (!in_.consume('{')) return false;
    bool has_weight_map = false;
    if (!in_.consume('}')) {
      std::vector<std::string_view> keys;  // top-level keys seen: a repeated one declines
      do {
        std::string_view key;
        if (!in_.string(key) || !in_.consume(':')) return false;
        if (keys.size() == kMaxTopKeys || std::find(keys.begin(), keys.end(), key) != keys.end())
          return false;
        keys.push_back(key);
        if (key == "weight_map") {
          if (!read_weight_map(map)) return false;
          has_weight_map = true;
        } else if (!skip_value(0)) {
          return false;
        }
      } while (in_.consume(','));
      if (!in_.consume('}')) return false;
    }
    return in_.at_end() && has_weight_map;
  }

 private:
  static constexpr std::size_t kMaxTopKeys = 64;
  // `"name": "file",` in an index of Pro's size: 78 bytes on average. Fewer: a smaller first guess,
  // then the list grows.
  static constexpr std::size_t kTypicalEntryBytes = 64;
  static constexpr int kMaxSkipDepth = 8;  // well below kMaxIndexDepth

  bool read_weight_map(WeightMap& map) {
    if (!in_.consume('{')) return false;
    if (in_.consume('}')) return true;
    std::unordered_map<std::string_view, std::uint32_t> file_ids;
    std::string_view last_file;  // consecutive tensors are usually in the same file
    std::uint32_t last_id = 0;
    do {
      std::string_view tensor, file;
      if (!in_.string(tensor) || !in_.consume(':') || !in_.string(file) || !is_single_file_name(file))
        return false;
      if (map.tensors.empty() || file != last_file) {
        const auto [it, fresh] = file_ids.emplace(file, static_cast<std::uint32_t>(map.files.size()));
        if (fresh) map.files.emplace_back(file);
        last_file = file;
        last_id = it->second;
      }
      if (map.tensors.empty()) map.tensors.reserve(text_.size() / kTypicalEntryBytes);
      map.tensors.push_back({static_cast<std::size_t>(tensor.data() - text_.data()),
                             static_cast<std::uint32_t>(tensor.size()), last_id});
    } while (in_.consume(','));
    return in_.consume('}');
  }

  // Any value of the plain subset, not kept.
  bool skip_value(int depth) {
    if (depth > kMaxSkipDepth) return false;
    std::string_view ignored;
    switch (in_.peek()) {
      case '"':
        return in_.string(ignored);
      case 't':
        return in_.literal("true");
      case 'f':
        return in_.literal("false");
      case 'n':
        return in_.literal("null");
      case '[':
        in_.consume('[');
        if (in_.consume(']')) return true;
        do {
          if (!skip_value(depth + 1)) return false;
        } while (in_.consume(','));
        return in_.consume(']');
      case '{':
        in_.consume('{');
        if (in_.consume('}')) return true;
        do {
          if (!in_.string(ignored) || !in_.consume(':') || !skip_value(depth + 1)) return false;
        } while (in_.consume(','));
        return in_.consume('}');
      default:
        return in_.skip_integer();
    }
  }

  std::string_view text_;
  JsonScanner in_;
};

// The full path: the whole index as an nlohmann document (so any JSON is read), then the checks.
std::map<std::string, std::string> read_weight_map_full(std::string_view text, const std::string& where) {
  const auto refuse = [&](const std::string& message) {
    return Error(ErrorKind::input, where + ": " + message);
  };
  // nlohmann takes a NUL for the end of the input and would ignore whatever follows it.
  if (const auto nul = text.find('\0'); nul != std::string::npos) {
    throw refuse(fmt::format("holds a NUL byte at offset {}", nul));
  }
  std::string top_key;
  std::set<std::string> mapped;
  const auto guard = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= kMaxIndexDepth) {
      throw refuse(fmt::format("JSON nested deeper than {} levels", kMaxIndexDepth));
    }
    if (event == E::key && depth == 1) top_key = parsed.get<std::string>();
    if (event == E::key && depth == 2 && top_key == "weight_map" &&
        !mapped.insert(parsed.get<std::string>()).second) {
      throw refuse(fmt::format("weight_map names tensor {} twice", quote_name(parsed.get<std::string>())));
    }
    return true;
  };
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(text.begin(), text.end(), guard);
  } catch (const nlohmann::json::exception& e) {
    throw refuse(fmt::format("not valid JSON: {}", e.what()));
  }
  if (!index.is_object()) throw refuse("is not a JSON object");
  const auto map = index.find("weight_map");
  if (map == index.end()) throw refuse("has no weight_map");
  if (!map->is_object()) throw refuse("weight_map is not an object");
  std::map<std::string, std::string> weight_map;
  for (const auto& [tensor, file] : map->items()) {
    if (!file.is_string())
      throw refuse(fmt::format("weight_map: tensor {} maps to a non-string", quote_name(tensor)));
    const auto name = file.get<std::string>();
    if (!is_single_file_name(name)) {
      throw refuse(fmt::format("weight_map: tensor {} maps to {}, which is not a file name in the folder",
                               quote_name(tensor), quote_name(name)));
    }
    weight_map.emplace(tensor, name);
  }
  return weight_map;
}

// A FIFO or device in the index's place is refused before it is read (it could block forever).
IndexText read_text(const fs::path& path) {
  const io::ReadOnlyFile file(path.string(), ErrorKind::input, "the index");
  const std::uint64_t size = file.size();
  if (size > kMaxIndexBytes) {
    throw Error(ErrorKind::input,
                fmt::format("{}: the index is larger than {} bytes", path.string(), kMaxIndexBytes));
  }
  IndexText text{HugeBuffer(allocate_array(static_cast<std::size_t>(size))), static_cast<std::size_t>(size)};
  io::pread_exact(file.fd(), path.string(), 0,
                  std::as_writable_bytes(std::span(text.bytes.get(), text.size)));
  return text;
}

}  // namespace

IndexText index_text(std::string_view text) {
  IndexText copy{HugeBuffer(allocate_array(text.size())), text.size()};
  std::copy(text.begin(), text.end(), copy.bytes.get());
  return copy;
}

std::optional<WeightMap> parse_index_fast(IndexText& text) {
  if (first_bad_byte(text.view()) != std::string_view::npos) return std::nullopt;  // nlohmann checks UTF-8
  WeightMap map;
  if (!IndexReader(text.view()).read(map)) return std::nullopt;
  map.names = std::move(text);  // the entries' offsets are into the text
  if (!sort_weight_map(map)) {
    text = std::move(map.names);  // given back for the full path, which names the duplicate
    return std::nullopt;
  }
  return map;
}

WeightMap parse_index_full(std::string_view text, const std::string& where) {
  const auto full = read_weight_map_full(text, where);
  WeightMap map;
  std::map<std::string_view, std::uint32_t> file_ids;
  for (const auto& [tensor, file] : full) file_ids.emplace(file, 0);
  for (auto& [file, id] : file_ids) {
    id = static_cast<std::uint32_t>(map.files.size());
    map.files.emplace_back(file);
  }
  std::string names;
  map.tensors.reserve(full.size());
  for (const auto& [tensor, file] : full) {
    map.tensors.push_back({names.size(), static_cast<std::uint32_t>(tensor.size()), file_ids.at(file)});
    names += tensor;
  }
  map.names = index_text(names);
  return map;
}

WeightMap parse_index(IndexText text, const std::string& where) {
  if (auto fast = parse_index_fast(text)) return std::move(*fast);
  return parse_index_full(text.view(), where);
}

WeightMap parse_index(std::string_view text, const std::string& where) {
  return parse_index(index_text(text), where);
}

WeightMap read_index(const fs::path& path) { return parse_index(read_text(path), path.string()); }

}  // namespace shardwise::st::detail
