#pragma once
// Rules parameters read from the checkpoint's own JSON files (`from_config:`, docs/rules.md
// "Parameters from the checkpoint's config"), and where each parameter's value came from.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/core/paths.hpp>

namespace shardwise::rules {

// One place a parameter's value may be read from, written `[FILE:]dotted.path`: the key path into
// nested objects of the JSON file FILE of the input folder (config.json when FILE is left out); a
// component may index a list, `weight_block_size[0]`.
struct ConfigKey {
  std::string file = "config.json";
  // Object keys, outermost first; a list index is a component of its own, "[0]".
  std::vector<std::string> path;
  std::string key() const;   // "quantization_config.bits"
  std::string text() const;  // "config.json: quantization_config.bits"
  bool operator==(const ConfigKey&) const = default;
};

// Reads `[FILE:]dotted.path`; nullopt with `problem` set when FILE is not a plain file name, a
// component of the path is empty or an index is malformed (`a[]`, `a[-1]`, `a[x]`).
std::optional<ConfigKey> parse_config_key(std::string_view text, std::string& problem);

// `map:` of a parameter: a config value read as a parameter value. `from` is how the value is
// spelt: a JSON string's content (`gptq`), else its JSON text (`null`, `-1`, `true`).
struct ConfigMapEntry {
  std::string from;
  std::uint64_t to = 0;  // a number, or the index of a choice
};

// Where a resolved parameter's value came from.
struct ParamSource {
  enum class Kind { flag, config, default_value, test };
  Kind kind = Kind::default_value;
  ConfigKey key;  // Kind::config: the key that gave it
  // "--heads", "config.json: num_attention_heads", "default", "the test's params".
  std::string text(std::string_view param) const;
};

// A value read from a config file.
struct ConfigValue {
  // integer: a JSON integer >= 0 that fits 64 bits; other: anything else but a string or null
  // (a negative number, 128.0, true, an object, an array).
  enum class Kind { integer, string, null, other };
  Kind kind = Kind::other;
  std::uint64_t number = 0;  // Kind::integer
  std::string text;          // a string's content; else the JSON text (`-1`, `128.0`, `true`)
  // As it appears in the file, for messages: `"gptq"`, `128.0` (shortened when long, printable).
  std::string shown() const;
};

// A parameter's value and where it came from, as plans and `explain` show it:
// "heads = 32 (config.json: num_attention_heads)", "kv_heads = 8 (--kv-heads)", "bits = 4 (default)".
std::string describe_param_source(std::string_view name, std::string_view value, const ParamSource& source);

// Config files larger than this, or nested deeper, are refused (Error(input)): they come from
// strangers, and a model's config is a few KiB.
inline constexpr std::uint64_t kMaxConfigBytes = std::uint64_t{16} << 20;
inline constexpr std::size_t kMaxConfigDepth = 64;

// The JSON files `from_config:` reads. Copies share what was read.
class ConfigFiles {
 public:
  // None: every key is absent (no checkpoint folder, e.g. `explain` without --hf-ckpt-path).
  ConfigFiles();
  // The files of an input folder, read as its side files are: regular files only, not through a
  // link that leads outside the folder (unless `links` allows it), at most kMaxConfigBytes.
  static ConfigFiles folder(std::string folder, OutsideLinks links);
  // Texts by file name (a rules file's tests: `config:`).
  static ConfigFiles texts(std::map<std::string, std::string> texts);

  // The value at `key`; nullopt when the file or a key of the path is absent (or a value on the
  // way is not an object). A file that exists and cannot be read or is not a JSON object (invalid
  // JSON, too large, too deep, not UTF-8, a link outside the folder) is an Error(input) naming it.
  std::optional<ConfigValue> value(const ConfigKey& key) const;
  // Why `key` is absent, for the message of a parameter that nothing gave: "config.json has no
  // num_attention_heads", "no params.json in FOLDER", "no checkpoint folder was given".
  std::string why_absent(const ConfigKey& key) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace shardwise::rules
