#include "safetensors/header_json.hpp"

#include <algorithm>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>

namespace shardwise::st::detail {

namespace {

using json = nlohmann::json;

// The length of the longest prefix of `text` of at most `limit` bytes that does not cut a UTF-8
// sequence, so shortened messages stay valid UTF-8.
std::size_t utf8_prefix(std::string_view text, std::size_t limit) {
  std::size_t n = std::min(text.size(), limit);
  while (n < text.size() && n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return n;
}

// Where the parser is in the only shape accepted:
// { "__metadata__": {str: str}, name: {"dtype": str, "shape": [int], "data_offsets": [int]} }
enum class Where { before, top, metadata, entry, array, after };

// One entry while it is being read: which fields were seen so far.
struct PartialEntry {
  RawEntry entry;
  bool has_dtype = false;
  bool has_shape = false;
  bool has_offsets = false;
};

class HeaderHandler final : public nlohmann::json_sax<json> {
 public:
  std::optional<std::string> error;  // set when the handler stopped the parse
  RawHeader header;

  bool null() override { return scalar("null"); }
  bool boolean(bool) override { return scalar("a boolean"); }
  bool number_integer(number_integer_t value) override {
    if (where_ == Where::array && value >= 0) return push(static_cast<std::uint64_t>(value));
    if (where_ == Where::array) return fail(fmt::format("{} entry {} is negative", field_context(), value));
    return scalar("a number");
  }
  bool number_unsigned(number_unsigned_t value) override {
    if (where_ == Where::array) return push(value);
    return scalar("a number");
  }
  bool number_float(number_float_t, const string_t& text) override {
    if (where_ == Where::array) {
      const std::string_view shown = std::string_view(text).substr(0, 64);  // numbers are ASCII
      return fail(fmt::format("{} entry {}{} is not a non-negative 64-bit integer", field_context(), shown,
                              shown.size() < text.size() ? "..." : ""));
    }
    return scalar("a number");
  }
  bool string(string_t& value) override {
    if (where_ == Where::metadata) {
      header.metadata.emplace(std::move(meta_key_), std::move(value));
      return true;
    }
    if (where_ == Where::entry && field_ == "dtype") {
      current_.entry.dtype = std::move(value);
      return true;
    }
    return scalar("a string");
  }
  bool binary(binary_t&) override { return scalar("binary"); }

  bool start_object(std::size_t) override;
  bool end_object() override;
  bool start_array(std::size_t) override;
  bool end_array() override {
    where_ = Where::entry;  // arrays are only entered from an entry's field
    return true;
  }
  bool key(string_t& key) override;
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    // Drop the library's "[json.exception.parse_error.101] " prefix; keep line, column and reason.
    // The reason quotes the token read last, which a hostile header can make megabytes long.
    std::string_view what = e.what();
    if (auto close = what.find("] "); close != std::string_view::npos) what.remove_prefix(close + 2);
    const std::size_t shown = utf8_prefix(what, 300);
    return fail(fmt::format("header is not valid JSON: {}{}", what.substr(0, shown),
                            shown < what.size() ? "..." : ""));
  }

 private:
  bool fail(std::string message) {
    error = std::move(message);
    return false;
  }
  std::string tensor() const { return "tensor " + quote_name(current_.entry.name); }
  std::string field_context() const { return fmt::format("{}: {}", tensor(), field_); }
  // A value of the wrong JSON type (`what` is "a string", "an object", ...) where `where_` is.
  bool wrong_type(std::string_view what);
  bool scalar(std::string_view what) { return wrong_type(what); }
  bool push(std::uint64_t value);

  Where where_ = Where::before;
  std::string key_;       // the current top-level key
  std::string meta_key_;  // the current __metadata__ key
  std::string field_;     // the current field of an entry
  PartialEntry current_;
  std::set<std::string, std::less<>> names_;  // top-level keys seen, to refuse duplicates
};

bool HeaderHandler::wrong_type(std::string_view what) {
  switch (where_) {
    case Where::before:
    case Where::after:
      return fail(fmt::format("header is not a JSON object (it is {})", what));
    case Where::top:
      if (key_ == "__metadata__") return fail(fmt::format("__metadata__ must be an object, not {}", what));
      return fail(fmt::format("tensor {}: entry must be an object, not {}", quote_name(key_), what));
    case Where::metadata:
      return fail(
          fmt::format("__metadata__ {}: value must be a string, not {}", quote_name(meta_key_), what));
    case Where::entry:
      return fail(fmt::format("{}: {} must be {}, not {}", tensor(), field_,
                              field_ == "dtype" ? "a string" : "an array of integers", what));
    case Where::array:
      return fail(fmt::format("{} entries must be non-negative integers, not {}", field_context(), what));
  }
  return fail("unreachable");
}

bool HeaderHandler::start_object(std::size_t) {
  if (where_ == Where::before) {
    where_ = Where::top;
    return true;
  }
  if (where_ != Where::top) return wrong_type("an object");
  if (key_ == "__metadata__") {
    where_ = Where::metadata;
    return true;
  }
  current_ = PartialEntry{};
  current_.entry.name = key_;
  where_ = Where::entry;
  return true;
}

bool HeaderHandler::end_object() {
  if (where_ == Where::metadata) {
    where_ = Where::top;
    return true;
  }
  if (where_ == Where::top) {
    where_ = Where::after;
    return true;
  }
  // Where::entry: every field must have been given.
  for (auto [seen, name] : {std::pair{current_.has_dtype, "dtype"}, std::pair{current_.has_shape, "shape"},
                            std::pair{current_.has_offsets, "data_offsets"}}) {
    if (!seen) return fail(fmt::format("{}: missing field '{}'", tensor(), name));
  }
  header.entries.push_back(std::move(current_.entry));
  where_ = Where::top;
  return true;
}

bool HeaderHandler::start_array(std::size_t) {
  if (where_ == Where::entry && field_ != "dtype") {
    where_ = Where::array;
    return true;
  }
  return wrong_type("an array");
}

bool HeaderHandler::key(string_t& key) {
  if (where_ == Where::top) {
    if (!names_.insert(key).second) {
      if (key == "__metadata__") return fail("__metadata__ appears twice");
      return fail(fmt::format("tensor {} appears twice", quote_name(key)));
    }
    key_ = std::move(key);
    return true;
  }
  if (where_ == Where::metadata) {
    if (header.metadata.count(key) != 0) {
      return fail(fmt::format("__metadata__ {}: key appears twice", quote_name(key)));
    }
    meta_key_ = std::move(key);
    return true;
  }
  // Where::entry
  bool* seen = key == "dtype"          ? &current_.has_dtype
               : key == "shape"        ? &current_.has_shape
               : key == "data_offsets" ? &current_.has_offsets
                                       : nullptr;
  if (seen == nullptr) return fail(fmt::format("{}: unknown field {}", tensor(), quote_name(key)));
  if (*seen) return fail(fmt::format("{}: field '{}' appears twice", tensor(), key));
  *seen = true;
  field_ = std::move(key);
  return true;
}

bool HeaderHandler::push(std::uint64_t value) {
  if (field_ == "shape") {
    if (current_.entry.shape.size() == kMaxRank) {
      return fail(fmt::format("{}: shape has more than {} dimensions", tensor(), kMaxRank));
    }
    current_.entry.shape.push_back(value);
    return true;
  }
  // Two offsets are needed; a third is reported with the count once, without storing more.
  if (current_.entry.data_offsets.size() == 2) {
    return fail(fmt::format("{}: data_offsets must hold 2 integers, not more", tensor()));
  }
  current_.entry.data_offsets.push_back(value);
  return true;
}

}  // namespace

RawHeader read_header_json(std::string_view text, const std::string& file) {
  HeaderHandler handler;
  const bool ok = json::sax_parse(text.begin(), text.end(), &handler);
  if (!ok || handler.error) {
    throw Error(ErrorKind::input,
                fmt::format("{}: {}", file, handler.error.value_or("header is not valid JSON")));
  }
  return std::move(handler.header);
}

std::string quote_name(std::string_view name) {
  const std::size_t shown = utf8_prefix(name, 200);
  std::string out = "'";
  for (std::size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (shown < name.size())
    out += fmt::format("...' ({} bytes)", name.size());
  else
    out += "'";
  return out;
}

}  // namespace shardwise::st::detail
