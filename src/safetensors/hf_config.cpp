#include <shardwise/safetensors/hf_config.hpp>

#include <charconv>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>

#include "safetensors/json_escape.hpp"

namespace shardwise::st {

namespace {

// json.dumps(value, indent=2, sort_keys=True) at nesting `level`: nlohmann::json keeps objects in
// a std::map, so its keys are already in bytewise order, which is Python's code point order.
void dump_python(std::string& out, const nlohmann::json& value, int level) {
  const std::string inner(static_cast<std::size_t>(2 * (level + 1)), ' ');
  const std::string outer(static_cast<std::size_t>(2 * level), ' ');
  switch (value.type()) {
    case nlohmann::json::value_t::object: {
      if (value.empty()) {
        out += "{}";
        return;
      }
      out += "{";
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        out += first ? "\n" : ",\n";
        first = false;
        out += inner;
        append_python_json_string(out, key, "config key");
        out += ": ";
        dump_python(out, item, level + 1);
      }
      out += "\n" + outer + "}";
      return;
    }
    case nlohmann::json::value_t::array: {
      if (value.empty()) {
        out += "[]";
        return;
      }
      out += "[";
      bool first = true;
      for (const auto& item : value) {
        out += first ? "\n" : ",\n";
        first = false;
        out += inner;
        dump_python(out, item, level + 1);
      }
      out += "\n" + outer + "]";
      return;
    }
    case nlohmann::json::value_t::string:
      append_python_json_string(out, value.get_ref<const std::string&>(), "config string");
      return;
    case nlohmann::json::value_t::boolean:
      out += value.get<bool>() ? "true" : "false";
      return;
    case nlohmann::json::value_t::number_integer:
      out += std::to_string(value.get<std::int64_t>());
      return;
    case nlohmann::json::value_t::number_unsigned:
      out += std::to_string(value.get<std::uint64_t>());
      return;
    case nlohmann::json::value_t::number_float:
      out += python_float_repr(value.get<double>());
      return;
    default:
      out += "null";
      return;
  }
}

}  // namespace

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  // The shortest round-trip digits, as d.ddde[+-]x.
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  const std::string text(buffer, result.ptr);
  const std::size_t e = text.find('e');
  const bool negative = text[0] == '-';
  std::string digits;
  for (std::size_t k = negative ? 1 : 0; k < e; ++k) {
    if (text[k] != '.') digits += text[k];
  }
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    return out + fmt::format("e{}{:02d}", exponent < 0 ? '-' : '+', std::abs(exponent));
  }
  if (exponent < 0) return out + "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
  const auto integral = static_cast<std::size_t>(exponent + 1);
  if (digits.size() <= integral) return out + digits + std::string(integral - digits.size(), '0') + ".0";
  return out + digits.substr(0, integral) + "." + digits.substr(integral);
}

std::string dequantized_config_json(std::string_view config_text, DType dtype, const std::string& path) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(config_text.begin(), config_text.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::input, fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
  if (!config.is_object()) throw Error(ErrorKind::input, fmt::format("{}: not a JSON object", path));
  if (dtype != DType::BF16 && dtype != DType::F16) {
    throw Error(ErrorKind::input,
                fmt::format("{}: dtype {} is neither BF16 nor F16", path, dtype_name(dtype)));
  }
  config.erase("quantization_config");
  config.erase("compression_config");
  const char* value = dtype == DType::BF16 ? "bfloat16" : "float16";
  const bool has_torch_dtype = config.contains("torch_dtype"), has_dtype = config.contains("dtype");
  if (has_torch_dtype || !has_dtype) config["torch_dtype"] = value;
  if (has_dtype) config["dtype"] = value;
  std::string out;
  dump_python(out, config, 0);
  return out + "\n";
}

}  // namespace shardwise::st
