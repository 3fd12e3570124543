// Rules parameters: `from_config:` and `map:` read with the file, and every parameter's value
// resolved from the command line, the checkpoint's own files and the defaults (docs/rules.md,
// "Parameters" and "Parameters from the checkpoint's config").
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/rules.hpp>
#include <shardwise/rules/suggest.hpp>

#include "rules/loader.hpp"

namespace shardwise::rules {

namespace detail {

namespace {

// More alternatives than this is not a parameter's spelling in a few releases, but a mistake.
constexpr std::size_t kMaxConfigKeys = 8;

// `map:` {CONFIG_VALUE: VALUE}: the value a choice word or a number, as the parameter takes.
void read_config_map(YamlReader& in, const YAML::Node& node, const std::string& what, ParamInfo& spec) {
  if (!node.IsMap()) {
    in.error(node, fmt::format("map of {} must be a map from config values to values, got {}", what,
                               node_kind(node)));
    return;
  }
  for (const auto& entry : node) {
    // A plain `null` key is yaml-cpp's Null node, which has no text of its own.
    if (!entry.first.IsScalar() && !entry.first.IsNull()) {
      in.error(entry.first, fmt::format("keys of the map of {} must be config values, got {}", what,
                                        node_kind(entry.first)));
      continue;
    }
    ConfigMapEntry mapped;
    mapped.from = entry.first.IsNull() ? "null" : entry.first.Scalar();
    if (std::any_of(spec.config_map.begin(), spec.config_map.end(),
                    [&](const ConfigMapEntry& e) { return e.from == mapped.from; })) {
      in.error(entry.first, fmt::format("the map of {} has '{}' twice", what, mapped.from));
      continue;
    }
    const auto text =
        in.string_value(entry.second, fmt::format("the value of '{}' in the map of {}", mapped.from, what));
    if (!text) continue;
    try {
      mapped.to = parse_param_value(spec, *text);
    } catch (const Error& e) {
      in.error(entry.second, fmt::format("the map of {}: {}", what, e.what()));
      continue;
    }
    spec.config_map.push_back(std::move(mapped));
  }
}

}  // namespace

void read_from_config(YamlReader& in, const YAML::Node& map, const std::string& what, ParamInfo& spec) {
  const YAML::Node keys = YamlReader::field(map, "from_config");
  const YAML::Node mapping = YamlReader::field(map, "map");
  if (!keys.IsDefined()) {
    if (mapping.IsDefined())
      in.error(mapping, fmt::format("map of {} maps config values: it needs from_config", what));
    return;
  }
  std::vector<YAML::Node> items;
  if (keys.IsSequence()) {
    for (const auto& item : keys) items.push_back(item);
    if (items.empty()) in.error(keys, fmt::format("from_config of {} is an empty list", what));
    if (items.size() > kMaxConfigKeys)
      in.error(keys, fmt::format("from_config of {} lists {} keys, more than {}", what, items.size(),
                                 kMaxConfigKeys));
  } else {
    items.push_back(keys);
  }
  for (const YAML::Node& item : items) {
    const auto text = in.string_value(item, fmt::format("a key of from_config of {}", what));
    if (!text) continue;
    std::string problem;
    std::optional<ConfigKey> key = parse_config_key(*text, problem);
    if (!key) {
      in.error(item, fmt::format("from_config of {}: {}", what, problem));
    } else if (std::find(spec.from_config.begin(), spec.from_config.end(), *key) != spec.from_config.end()) {
      in.error(item, fmt::format("from_config of {} lists {} twice", what, key->text()));
    } else {
      spec.from_config.push_back(std::move(*key));
    }
  }
  if (mapping.IsDefined()) read_config_map(in, mapping, what, spec);
}

}  // namespace detail

namespace {

// "config.json num_attention_heads or params.json n_heads".
std::string config_keys_text(const ParamInfo& param) {
  std::vector<std::string> keys;
  for (const ConfigKey& key : param.from_config) keys.push_back(key.file + " " + key.key());
  return fmt::format("{}", fmt::join(keys, " or "));
}

// "[1, 65536]"; "[1, ...]" without an upper bound.
std::string range_text(const ParamInfo& spec) {
  return spec.max == UINT64_MAX ? fmt::format("[{}, ...]", spec.min)
                                : fmt::format("[{}, {}]", spec.min, spec.max);
}

// A value the checkpoint gives a parameter, and the key that gave it.
struct ConfigGiven {
  std::uint64_t value = 0;
  ConfigKey key;
  std::string shown;  // as in the file, and what it is read as when mapped: `null (read as gptq)`
};

// The first of the parameter's keys that the checkpoint holds (a null not mapped counts as absent),
// read as the parameter's value; a value it does not take is added to `bad`.
std::optional<ConfigGiven> config_value(const ParamInfo& spec, const ConfigFiles& config,
                                        std::vector<std::string>& bad) {
  const auto add_bad = [&bad](std::string message) {
    if (std::find(bad.begin(), bad.end(), message) == bad.end()) bad.push_back(std::move(message));
  };
  for (const ConfigKey& key : spec.from_config) {
    std::optional<ConfigValue> found;
    try {
      found = config.value(key);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::input) throw;
      add_bad(e.what());  // the file itself: said once for all the parameters that read it
      return std::nullopt;
    }
    if (!found) continue;
    const auto mapped = std::find_if(spec.config_map.begin(), spec.config_map.end(),
                                     [&](const ConfigMapEntry& e) { return e.from == found->text; });
    if (mapped != spec.config_map.end()) {
      return ConfigGiven{mapped->to, key,
                         fmt::format("{} (read as {})", found->shown(), param_value_text(spec, mapped->to))};
    }
    if (found->kind == ConfigValue::Kind::null) continue;
    const std::string from = fmt::format("parameter {} (from_config at {})", spec.name, spec.where.str());
    if (!spec.choices.empty()) {
      const auto word = std::find(spec.choices.begin(), spec.choices.end(), found->text);
      if (found->kind == ConfigValue::Kind::string && word != spec.choices.end())
        return ConfigGiven{static_cast<std::uint64_t>(word - spec.choices.begin()), key, found->shown()};
      add_bad(fmt::format("{} is {}, not one of the choices of {}: {}", key.text(), found->shown(), from,
                          fmt::join(spec.choices, ", ")));
      return std::nullopt;
    }
    if (found->kind != ConfigValue::Kind::integer) {
      add_bad(fmt::format("{} is {}, not a non-negative integer for {}", key.text(), found->shown(), from));
      return std::nullopt;
    }
    if (found->number < spec.min || found->number > spec.max) {
      add_bad(fmt::format("{} is {}, outside the range {} of {}", key.text(), found->shown(),
                          range_text(spec), from));
      return std::nullopt;
    }
    return ConfigGiven{found->number, key, found->shown()};
  }
  return std::nullopt;
}

std::string given_text(const ParamInfo& spec, std::uint64_t value, ParamSource::Kind given_as) {
  if (given_as == ParamSource::Kind::test)
    return fmt::format("the test's {}={}", spec.name, param_value_text(spec, value));
  return fmt::format("{} {}", param_flag(spec.name), param_value_text(spec, value));
}

std::string missing_text(const ParamInfo& spec, const ConfigFiles& config) {
  std::string absent;
  if (!spec.from_config.empty()) {
    std::vector<std::string> why;
    for (const ConfigKey& key : spec.from_config) why.push_back(config.why_absent(key));
    absent = fmt::format(" and the checkpoint does not give it ({})", fmt::join(why, "; "));
  }
  return fmt::format("{} is required: {} (parameter {} of {} has no default{}; --param {}=N is the same)",
                     param_flag(spec.name), spec.help.empty() ? "a rules parameter" : spec.help, spec.name,
                     spec.where.str(), absent, spec.name);
}

void throw_all(ErrorKind kind, const std::vector<std::string>& problems) {
  if (problems.size() == 1) throw Error(kind, problems.front());
  if (!problems.empty()) throw Error(kind, fmt::format("{}", fmt::join(problems, "\n")));
}

}  // namespace

std::string param_argument_text(const ParamInfo& param, std::string_view number) {
  if (!param.choices.empty()) return fmt::format("{}", fmt::join(param.choices, "|"));
  if (param.min == 0 && param.max == UINT64_MAX) return std::string(number);
  return fmt::format("{} in {}", number, range_text(param));
}

std::string param_default_text(const ParamInfo& param) {
  std::string otherwise = param.inferred ? "default: infer" : "required";
  if (param.default_value) otherwise = "default: " + param_value_text(param, *param.default_value);
  if (param.from_config.empty()) return otherwise;
  return fmt::format("default: from {}, else {}", config_keys_text(param),
                     param.default_value ? param_value_text(param, *param.default_value)
                     : param.inferred    ? "infer"
                                         : "required");
}

Params Rules::resolve_params(const Params& given) const {
  return resolve_params(given, ConfigFiles()).values;
}

ResolvedParams Rules::resolve_params(const Params& given, const ConfigFiles& config,
                                     ParamSource::Kind given_as) const {
  std::vector<std::string> known{"mp"};
  for (const auto& spec : impl_->params) known.push_back(spec.name);
  for (const auto& [name, value] : given) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      throw Error(ErrorKind::usage,
                  fmt::format("unknown parameter '{}' for rules {}{} (known: {})", name, impl_->display_name,
                              detail::did_you_mean(name, known), fmt::join(known, ", ")));
    }
  }
  ResolvedParams out;
  out.values["mp"] = 1;
  if (const auto mp = given.find("mp"); mp != given.end()) out.values["mp"] = mp->second;
  std::vector<std::string> bad_config;  // Error(input): the checkpoint's
  std::vector<std::string> usage;       // Error(usage): the command line's
  for (const auto& spec : impl_->params) {
    const auto it = given.find(spec.name);
    if (!spec.choices.empty() && it != given.end() && it->second >= spec.choices.size()) {
      throw Error(ErrorKind::usage, fmt::format("{}: {} is not the index of one of {}", param_flag(spec.name),
                                                it->second, fmt::join(spec.choices, ", ")));
    }
    if (spec.choices.empty() && it != given.end() && (it->second < spec.min || it->second > spec.max)) {
      usage.push_back(fmt::format("{} is outside the range {} of parameter {} ({})",
                                  given_text(spec, it->second, given_as), range_text(spec), spec.name,
                                  spec.where.str()));
    }
    const std::optional<ConfigGiven> from_config = config_value(spec, config, bad_config);
    if (it != given.end()) {
      if (from_config && from_config->value != it->second) {
        usage.push_back(
            fmt::format("{} contradicts the checkpoint: {} is {} (leave {} out, or give the same value)",
                        given_text(spec, it->second, given_as), from_config->key.text(), from_config->shown,
                        param_flag(spec.name)));
      }
      out.values[spec.name] = it->second;
      out.sources[spec.name] = {given_as, {}};
    } else if (from_config) {
      out.values[spec.name] = from_config->value;
      out.sources[spec.name] = {ParamSource::Kind::config, from_config->key};
    } else if (spec.default_value) {
      out.values[spec.name] = *spec.default_value;
      out.sources[spec.name] = {ParamSource::Kind::default_value, {}};
    } else if (!spec.inferred) {
      usage.push_back(missing_text(spec, config));
    }
  }
  throw_all(ErrorKind::input, bad_config);
  throw_all(ErrorKind::usage, usage);
  if (out.values.at("mp") == 0)
    throw Error(ErrorKind::usage, "mp (the model-parallel size) must be at least 1");
  return out;
}

}  // namespace shardwise::rules
