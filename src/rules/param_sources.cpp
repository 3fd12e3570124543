// The checkpoint's JSON files as `from_config:` reads them: found in the input folder as its side
// files are, bounded (size, nesting), parsed once per file, and looked up by key path.
#include <shardwise/rules/param_sources.hpp>

#include <filesystem>
#include <mutex>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/core/io.hpp>
#include <shardwise/core/printable.hpp>
#include <shardwise/rules/rules.hpp>

namespace shardwise::rules {

namespace {

using Json = nlohmann::json;

// A JSON value's text in messages: at most this many bytes of it.
constexpr std::size_t kShownBytes = 80;

Json parse_config(const std::string& text, const std::string& shown) {
  // nlohmann's parser keeps no recursion of its own, but a value nested a million deep is still
  // nothing a config holds: refused at the first level beyond kMaxConfigDepth.
  const Json::parser_callback_t depth_limit = [&shown](int depth, Json::parse_event_t, Json&) {
    if (static_cast<std::size_t>(depth) > kMaxConfigDepth) {
      throw Error(ErrorKind::input, fmt::format("{}: nested more than {} levels deep: not a model's config",
                                                shown, kMaxConfigDepth));
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(text, depth_limit);
  } catch (const Json::exception& e) {
    throw Error(ErrorKind::input, fmt::format("{}: not valid JSON: {}", shown, printable(e.what())));
  }
  if (!json.is_object()) throw Error(ErrorKind::input, fmt::format("{}: not a JSON object", shown));
  return json;
}

ConfigValue value_of(const Json& json) {
  ConfigValue value;
  if (json.is_string()) {
    value.kind = ConfigValue::Kind::string;
    value.text = json.get<std::string>();
    return value;
  }
  value.text = json.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (json.is_null()) {
    value.kind = ConfigValue::Kind::null;
  } else if (json.is_number_unsigned()) {
    value.kind = ConfigValue::Kind::integer;
    value.number = json.get<std::uint64_t>();
  } else if (json.is_number_integer() && json.get<std::int64_t>() >= 0) {
    value.kind = ConfigValue::Kind::integer;
    value.number = static_cast<std::uint64_t>(json.get<std::int64_t>());
  }
  return value;
}

// A component that indexes a list: "[0]" (parse_config_key writes no other component with '[').
bool is_index(const std::string& component) { return component.front() == '['; }

// "quantization_config.weight_block_size[0]": components joined by '.', an index appended as written.
std::string path_text(std::span<const std::string> path) {
  std::string text;
  for (const std::string& component : path) {
    if (!text.empty() && !is_index(component)) text += '.';
    text += component;
  }
  return text;
}

// More digits than this is no list a config holds (and keeps std::stoull in range).
constexpr std::size_t kMaxIndexDigits = 6;

// "name", "name[0]", "name[0][1]": the name, then each index as a component of its own ("[0]").
bool split_component(std::string_view piece, std::vector<std::string>& path) {
  const std::size_t bracket = piece.find('[');
  path.emplace_back(piece.substr(0, bracket));
  if (path.back().empty()) return false;
  for (std::size_t at = bracket; at != std::string_view::npos && at < piece.size();) {
    const std::size_t close = piece.find(']', at);
    if (piece[at] != '[' || close == std::string_view::npos || close == at + 1 ||
        close - at - 1 > kMaxIndexDigits)
      return false;
    const std::string_view digits = piece.substr(at + 1, close - at - 1);
    if (digits.find_first_not_of("0123456789") != std::string_view::npos) return false;
    path.emplace_back(piece.substr(at, close - at + 1));
    at = close + 1;
  }
  return true;
}

// The value `component` ("name" of an object, "[N]" of a list) names inside `json`; null when absent.
const Json* step(const Json& json, const std::string& component) {
  if (is_index(component)) {
    const auto index = static_cast<std::size_t>(std::stoull(component.substr(1, component.size() - 2)));
    return json.is_array() && index < json.size() ? &json[index] : nullptr;
  }
  if (!json.is_object()) return nullptr;
  const auto it = json.find(component);
  return it == json.end() ? nullptr : &*it;
}

}  // namespace

std::string ConfigKey::key() const { return path_text(path); }

std::string ConfigKey::text() const { return file + ": " + key(); }

std::optional<ConfigKey> parse_config_key(std::string_view text, std::string& problem) {
  ConfigKey key;
  const std::string written(text);
  const std::size_t colon = text.find(':');
  if (colon != std::string_view::npos) {
    key.file = std::string(text.substr(0, colon));
    text.remove_prefix(colon + 1);
    if (const std::string why = file_name_problem(key.file); !why.empty()) {
      problem = fmt::format("the file of '{}' is {}: it must be a plain file name of the input folder",
                            written, why);
      return std::nullopt;
    }
  }
  for (std::size_t begin = 0;;) {
    const std::size_t dot = text.find('.', begin);
    const std::string_view piece =
        text.substr(begin, dot == std::string_view::npos ? text.npos : dot - begin);
    if (piece.empty() || piece.front() == '[') {
      problem = fmt::format("key '{}' has an empty component (expected [FILE:]name.name[N]...)", written);
      return std::nullopt;
    }
    if (!split_component(piece, key.path)) {
      problem = fmt::format(
          "key '{}': '{}' is not a name with list indices (expected name or name[N], N of at most {} digits)",
          written, piece, kMaxIndexDigits);
      return std::nullopt;
    }
    if (dot == std::string_view::npos) break;
    begin = dot + 1;
  }
  return key;
}

std::string ConfigValue::shown() const {
  std::string json =
      kind == Kind::string ? Json(text).dump(-1, ' ', false, Json::error_handler_t::replace) : text;
  if (json.size() > kShownBytes) json = json.substr(0, kShownBytes) + "...";
  return printable(json);
}

std::string ParamSource::text(std::string_view param) const {
  switch (kind) {
    case Kind::flag:
      return param_flag(param);
    case Kind::config:
      return key.text();
    case Kind::default_value:
      return "default";
    case Kind::test:
      return "the test's params";
  }
  return "";
}

std::string describe_param_source(std::string_view name, std::string_view value, const ParamSource& source) {
  return fmt::format("{} = {} ({})", name, value, printable(source.text(name)));
}

struct ConfigFiles::State {
  std::optional<std::string> folder;  // none: no files at all, or only `texts`
  OutsideLinks links = OutsideLinks::refuse;
  std::map<std::string, std::string> texts;
  bool given_texts = false;  // ConfigFiles::texts
  std::mutex mutex;
  std::map<std::string, std::optional<Json>> parsed;  // by file name; nullopt: absent

  // The file's parsed JSON, or null when it is absent; read and parsed once.
  const Json* file(const std::string& name) {
    const std::lock_guard lock(mutex);
    auto it = parsed.find(name);
    if (it == parsed.end()) it = parsed.emplace(name, load(name)).first;
    return it->second ? &*it->second : nullptr;
  }

  std::optional<Json> load(const std::string& name) const {
    if (const auto text = texts.find(name); text != texts.end()) return parse_config(text->second, name);
    if (!folder) return std::nullopt;
    const std::string path = (std::filesystem::path(*folder) / name).string();
    std::error_code ec;
    if (std::filesystem::symlink_status(path, ec).type() == std::filesystem::file_type::not_found)
      return std::nullopt;
    const io::ReadOnlyFile in(path, ErrorKind::input, "the config file");
    check_inside_folder(*folder, name, links, in.fd());
    const std::uint64_t size = in.size();
    if (size > kMaxConfigBytes) {
      throw Error(ErrorKind::input, fmt::format("{}: {} bytes, more than the {} a config file may hold", path,
                                                size, kMaxConfigBytes));
    }
    std::string text(static_cast<std::size_t>(size), '\0');
    io::pread_exact(in.fd(), path, 0, std::as_writable_bytes(std::span(text)));
    return parse_config(text, path);
  }
};

ConfigFiles::ConfigFiles() : state_(std::make_shared<State>()) {}

ConfigFiles ConfigFiles::folder(std::string folder, OutsideLinks links) {
  ConfigFiles files;
  files.state_->folder = std::move(folder);
  files.state_->links = links;
  return files;
}

ConfigFiles ConfigFiles::texts(std::map<std::string, std::string> texts) {
  ConfigFiles files;
  files.state_->texts = std::move(texts);
  files.state_->given_texts = true;
  return files;
}

std::optional<ConfigValue> ConfigFiles::value(const ConfigKey& key) const {
  const Json* json = state_->file(key.file);
  for (const std::string& component : key.path) {
    if (json == nullptr) return std::nullopt;
    json = step(*json, component);
  }
  if (json == nullptr) return std::nullopt;
  return value_of(*json);
}

std::string ConfigFiles::why_absent(const ConfigKey& key) const {
  if (!state_->folder && state_->texts.count(key.file) == 0) {
    return state_->given_texts ? fmt::format("the test gives no {}", key.file)
                               : std::string("no checkpoint folder was given");
  }
  const Json* json = state_->file(key.file);
  if (json == nullptr) return fmt::format("no {} in {}", key.file, state_->folder.value_or("the test"));
  std::size_t depth = 0;
  for (const std::string& component : key.path) {
    const Json* next = step(*json, component);
    if (next == nullptr) break;
    json = next;
    ++depth;
  }
  if (depth == key.path.size()) return fmt::format("{} is null", key.text());
  const std::string& missing = key.path[depth];
  const std::string found = path_text(std::span(key.path).first(depth));
  if (is_index(missing)) {
    if (!json->is_array()) return fmt::format("{}: {} is not a list", key.file, found);
    return fmt::format("{}: {} has {} element{}, no {}", key.file, found, json->size(),
                       json->size() == 1 ? "" : "s", missing);
  }
  if (depth == 0) return fmt::format("{} has no {}", key.file, missing);
  return json->is_object() ? fmt::format("{}: {} has no {}", key.file, found, missing)
                           : fmt::format("{}: {} is not an object", key.file, found);
}

}  // namespace shardwise::rules
