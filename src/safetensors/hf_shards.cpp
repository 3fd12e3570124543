#include <shardwise/safetensors/hf_shards.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>

#include "safetensors/json_escape.hpp"

namespace shardwise::st {

namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_space(char c) noexcept { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string_view strip(std::string_view text) noexcept {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// Python's float() syntax for a finite decimal: [+-] (digits [. [digits]] | . digits) [e [+-] digits].
// (Underscores, "inf" and "nan", which float() also takes, are refused.)
bool is_decimal(std::string_view text) noexcept {
  std::size_t i = 0;
  const auto digits = [&] {
    const std::size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    return i - start;
  };
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  std::size_t mantissa_digits = digits();
  if (i < text.size() && text[i] == '.') {
    ++i;
    mantissa_digits += digits();
  }
  if (mantissa_digits == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == text.size();
}

[[noreturn]] void bad_size(std::string_view text, std::string_view why) {
  throw Error(ErrorKind::usage, fmt::format("max shard size '{}': {}", text, why));
}

// The digit run starting at `i` of `s` ends at the returned index.
std::size_t run_end(std::string_view s, std::size_t i, bool digits) noexcept {
  while (i < s.size() && is_digit(s[i]) == digits) ++i;
  return i;
}

// <0, 0, >0 for two runs of digits compared by value, then by length (the shorter first).
int compare_numbers(std::string_view a, std::string_view b) noexcept {
  const std::string_view a_value = a.substr(std::min(a.find_first_not_of('0'), a.size()));
  const std::string_view b_value = b.substr(std::min(b.find_first_not_of('0'), b.size()));
  if (a_value.size() != b_value.size()) return a_value.size() < b_value.size() ? -1 : 1;
  if (const int c = a_value.compare(b_value); c != 0) return c;
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  return 0;
}

}  // namespace

std::uint64_t parse_max_shard_size(std::string_view original) {
  const std::string_view text = strip(original);
  if (!text.empty() && std::all_of(text.begin(), text.end(), is_digit)) {
    std::uint64_t bytes = 0;
    for (const char c : text) {
      if (__builtin_mul_overflow(bytes, 10, &bytes) || __builtin_add_overflow(bytes, c - '0', &bytes)) {
        bad_size(original, "more than 2^64 bytes");
      }
    }
    if (bytes == 0) bad_size(original, "a shard must be allowed at least one byte");
    return bytes;
  }
  std::string unit(text.substr(text.size() < 2 ? 0 : text.size() - 2));
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double multiplier = 0;
  if (unit == "TB") multiplier = 1e12;
  if (unit == "GB") multiplier = 1e9;
  if (unit == "MB") multiplier = 1e6;
  if (unit == "KB") multiplier = 1e3;
  if (multiplier == 0) {
    bad_size(original, unit == "IB"
                           ? "binary units are not accepted (huggingface_hub takes TB, GB, MB or KB, powers "
                             "of ten); give the number of bytes instead"
                           : "give a number of bytes, or a number with TB, GB, MB or KB (powers of ten)");
  }
  const std::string number(strip(text.substr(0, text.size() - 2)));
  if (!is_decimal(number)) bad_size(original, fmt::format("'{}' is not a number", number));
  // strtod rounds correctly, as Python's float() does; the product is one double multiplication.
  const double bytes = std::strtod(number.c_str(), nullptr) * multiplier;
  if (!(bytes >= 1)) bad_size(original, "a shard must be allowed at least one byte");
  if (bytes >= 0x1p64) bad_size(original, "more than 2^64 bytes");
  return static_cast<std::uint64_t>(bytes);
}

std::vector<std::vector<std::size_t>> split_into_shards(const std::vector<std::uint64_t>& sizes,
                                                        std::uint64_t max_size) {
  std::vector<std::vector<std::size_t>> shards;
  std::vector<std::size_t> current;
  std::uint64_t current_size = 0;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    if (sizes[k] > max_size) {
      shards.push_back({k});
      continue;
    }
    if (current_size + sizes[k] > max_size) {  // no overflow: both are at most max_size
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(k);
    current_size += sizes[k];
  }
  if (!current.empty()) shards.push_back(std::move(current));
  return shards;
}

std::vector<std::string> hf_shard_file_names(std::size_t count) {
  if (count == 1) return {"model.safetensors"};
  std::vector<std::string> names;
  names.reserve(count);
  for (std::size_t k = 1; k <= count; ++k)
    names.push_back(fmt::format("model-{:05d}-of-{:05d}.safetensors", k, count));
  return names;
}

bool natural_name_less(std::string_view a, std::string_view b) {
  std::size_t i = 0, j = 0;
  for (bool digits = false;; digits = !digits) {
    const std::size_t i_end = run_end(a, i, digits), j_end = run_end(b, j, digits);
    const std::string_view a_run = a.substr(i, i_end - i), b_run = b.substr(j, j_end - j);
    const int c = digits ? compare_numbers(a_run, b_run) : a_run.compare(b_run);
    if (c != 0) return c < 0;
    i = i_end, j = j_end;
    // Both parts equal: the name that has ended has fewer parts, and comes first.
    if (i == a.size() || j == b.size()) return i == a.size() && j != b.size();
  }
}

std::string hf_index_json(std::vector<std::pair<std::string, std::string>> weight_map,
                          std::uint64_t total_size) {
  std::sort(weight_map.begin(), weight_map.end());
  std::string out =
      fmt::format("{{\n  \"metadata\": {{\n    \"total_size\": {}\n  }},\n  \"weight_map\": {{", total_size);
  for (std::size_t k = 0; k < weight_map.size(); ++k) {
    if (k > 0 && weight_map[k].first == weight_map[k - 1].first) {
      throw Error(ErrorKind::input, fmt::format("index: tensor {} is listed twice", weight_map[k].first));
    }
    out += k == 0 ? "\n    " : ",\n    ";
    append_python_json_string(out, weight_map[k].first, "tensor name");
    out += ": ";
    append_python_json_string(out, weight_map[k].second, fmt::format("file name of {}", weight_map[k].first));
  }
  out += weight_map.empty() ? "}\n}\n" : "\n  }\n}\n";
  return out;
}

}  // namespace shardwise::st
