// The fast path of read_plan_records: a plan written as `shardwise plan --format json` writes it
// (plain strings, integers, the usual nesting) read by a hand-written scanner, each tensor's
// record formatted directly as the compact, key-sorted JSON nlohmann's dump would give. Anything
// outside that subset is a refusal, never a message: the caller then reads the text with
// nlohmann's SAX parser, which words every error. So what this accepts, both read identically.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "plan/plan_reader.hpp"

namespace shardwise::plan::detail {

namespace {

using nlohmann::json;

// Deeper nesting than a plan has is refused (the full reader takes it).
constexpr std::size_t kMaxDepth = 32;

class PlainPlanScanner {
 public:
  explicit PlainPlanScanner(std::string_view text) : text_(text), levels_(kMaxDepth + 1) {}
  explicit PlainPlanScanner(FileWindow& window)
      : text_(window.text()), levels_(kMaxDepth + 1), window_(&window) {}

  // The plan's records and its head (what the SAX reader leaves in its DOM), or false.
  bool read(PlainPlan& plan) {
    if (!read_top(plan)) return false;
    skip_space();
    while (window_ != nullptr && pos_ == text_.size() && !window_->at_end()) {
      slide();
      skip_space();
    }
    return pos_ == text_.size() && (window_ == nullptr || window_->at_end());
  }

 private:
  // A member of an object being formatted: its key and its value's text in the level's buffer.
  struct Member {
    std::string_view key;
    std::size_t begin = 0;
    std::size_t end = 0;
    bool kept = true;  // false: consumed, listed only so that a later duplicate key is seen
  };
  // Reused across objects at the same depth to save on allocation.
  struct Level {
    std::string text;
    std::vector<Member> members;
  };

  bool read_top(PlainPlan& plan) {
    if (!consume('{')) return false;
    plan.records.head = json::object();
    if (consume('}')) return true;
    do {
      top_up();
      std::string_view key;
      if (!string(key) || !consume(':') || plan.records.head.contains(key)) return false;
      json& value = plan.records.head[std::string(key)];
      if (key == "outputs") {
        if (!read_outputs(plan, value)) return false;
      } else if (key == "skipped") {
        if (!read_skipped(plan, value)) return false;
      } else if (!value_json(value, 1)) {
        return false;
      }
    } while (consume(','));
    return consume('}');
  }

  bool read_outputs(PlainPlan& plan, json& outputs) {
    outputs = json::array();
    if (!consume('[')) return false;
    if (consume(']')) return true;
    do {
      top_up();
      json& output = outputs.emplace_back(json::object());
      if (!consume('{')) return false;
      if (consume('}')) continue;
      do {
        top_up();
        std::string_view key;
        if (!string(key) || !consume(':') || output.contains(key)) return false;
        json& value = output[std::string(key)];
        if (key == "tensors") {
          if (!read_tensors(plan, value, outputs.size() - 1)) return false;
        } else if (!value_json(value, 3)) {
          return false;
        }
      } while (consume(','));
      if (!consume('}')) return false;
    } while (consume(','));
    return consume(']');
  }

  bool read_tensors(PlainPlan& plan, json& tensors, std::size_t output) {
    tensors = json::array();
    if (!consume('[')) return false;
    if (consume(']')) return true;
    do {
      top_up();
      std::string_view name;
      record_.clear();
      if (peek() != '{' || !record(record_, 4, {"rule"}, "source", name)) return false;
      plan.records.placements.push_back({plan.names.intern(name), 0, plan.records.text.add(record_)});
      plan.output_of_placement.push_back(output);
    } while (consume(','));
    return consume(']');
  }

  bool read_skipped(PlainPlan& plan, json& skipped) {
    skipped = json::array();
    if (!consume('[')) return false;
    if (consume(']')) return true;
    do {
      top_up();
      std::string_view name;
      record_.clear();
      if (peek() != '{' || !record(record_, 2, {"name", "rule", "reason"}, {}, name)) return false;
      plan.records.skipped.push_back({plan.names.intern(name), plan.records.text.add(record_)});
    } while (consume(','));
    return consume(']');
  }

  // A tensor (or skipped entry) object formatted without the keys `drop`; its source's name is
  // taken out of the object under `inner` (tensors: "source"), or out of the object itself.
  bool record(std::string& out, std::size_t depth, std::initializer_list<std::string_view> drop,
              std::string_view inner, std::string_view& name) {
    bool named = false;
    const auto take = [&](std::string_view key, std::size_t at) -> int {
      if (inner.empty() && key == "name") {
        named = string(name);
        return named ? 1 : -1;
      }
      if (!inner.empty() && key == inner) {
        if (peek() != '{') return -1;
        std::string& text = levels_[depth].text;
        const bool ok = object(text, depth + 1, {"name"}, &name, &named);
        return ok && named ? 0 : -1;
      }
      if (std::find(drop.begin(), drop.end(), key) != drop.end()) return skip_value(at) ? 1 : -1;
      return 2;
    };
    return object_with(out, depth, take) && named;
  }

  // An object formatted with sorted keys, without the keys in `drop` except "name", which is
  // kept out as `name` (a string) when `name` is given.
  bool object(std::string& out, std::size_t depth, std::initializer_list<std::string_view> drop,
              std::string_view* name, bool* named) {
    const auto take = [&](std::string_view key, std::size_t at) -> int {
      if (name != nullptr && key == "name") {
        *named = string(*name);
        return *named ? 1 : -1;
      }
      if (std::find(drop.begin(), drop.end(), key) != drop.end()) return skip_value(at) ? 1 : -1;
      return 2;
    };
    return object_with(out, depth, take);
  }

  // The object at the cursor, its members sorted by key, appended to `out`. `take(key, depth)`
  // says what to do with a member's value: -1 refuse, 0 already formatted into the level's
  // buffer, 1 consumed and left out, 2 format it here.
  template <typename Take>
  bool object_with(std::string& out, std::size_t depth, const Take& take) {
    if (depth >= kMaxDepth || !consume('{')) return false;
    Level& level = levels_[depth];
    level.text.clear();
    level.members.clear();
    if (!consume('}')) {
      do {
        std::string_view key;
        if (!string(key) || !consume(':')) return false;
        for (const Member& m : level.members)
          if (m.key == key) return false;  // a key twice: the full reader's message
        const std::size_t begin = level.text.size();
        const int taken = take(key, depth + 1);
        if (taken < 0) return false;
        if (taken == 2 && !value_text(level.text, depth + 1)) return false;
        level.members.push_back({key, begin, level.text.size(), taken != 1});
      } while (consume(','));
      if (!consume('}')) return false;
    }
    std::vector<Member>& members = level.members;
    std::erase_if(members, [](const Member& m) { return !m.kept; });
    std::sort(members.begin(), members.end(), [](const Member& a, const Member& b) { return a.key < b.key; });
    out += '{';
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (i > 0) out += ',';
      out += '"';
      out += members[i].key;
      out += "\":";
      out.append(level.text, members[i].begin, members[i].end - members[i].begin);
    }
    out += '}';
    return true;
  }

  // Any value, formatted as nlohmann's dump() of its parse.
  bool value_text(std::string& out, std::size_t depth) {
    const char c = peek();
    if (c == '{') {
      return object(out, depth, {}, nullptr, nullptr);
    }
    if (c == '[') {
      ++pos_;
      out += '[';
      if (consume(']')) {
        out += ']';
        return true;
      }
      if (depth >= kMaxDepth) return false;
      bool first = true;
      do {
        if (!first) out += ',';
        first = false;
        if (!value_text(out, depth + 1)) return false;
      } while (consume(','));
      out += ']';
      return consume(']');
    }
    if (c == '"') {
      std::string_view text;
      if (!string(text)) return false;
      out += '"';
      out += text;
      out += '"';
      return true;
    }
    std::string_view word;
    if (!scalar(word)) return false;
    out += word;
    return true;
  }

  // A consumed member's value, checked but not kept (the full reader would refuse what this does).
  bool skip_value(std::size_t depth) {
    if (depth >= kMaxDepth) return false;
    std::string& scratch = levels_[depth].text;
    const std::size_t size = scratch.size();
    const bool ok = value_text(scratch, depth + 1);
    scratch.resize(size);
    return ok;
  }

  // Any value as nlohmann::json, for the head.
  bool value_json(json& out, std::size_t depth) {
    if (depth >= kMaxDepth) return false;
    const char c = peek();
    if (c == '{') {
      ++pos_;
      out = json::object();
      if (consume('}')) return true;
      do {
        std::string_view key;
        if (!string(key) || !consume(':') || out.contains(key)) return false;
        if (!value_json(out[std::string(key)], depth + 1)) return false;
      } while (consume(','));
      return consume('}');
    }
    if (c == '[') {
      ++pos_;
      out = json::array();
      if (consume(']')) return true;
      do {
        if (!value_json(out.emplace_back(), depth + 1)) return false;
      } while (consume(','));
      return consume(']');
    }
    if (c == '"') {
      std::string_view text;
      if (!string(text)) return false;
      out = std::string(text);
      return true;
    }
    std::string_view word;
    if (!scalar(word)) return false;
    if (word == "null") {
      out = nullptr;
    } else if (word == "true" || word == "false") {
      out = word == "true";
    } else if (word.front() == '-') {
      out = -static_cast<std::int64_t>(magnitude(word.substr(1)) - 1) - 1;
    } else {
      out = magnitude(word);
    }
    return true;
  }

  // true, false, null or an integer that nlohmann keeps as an integer and writes back as the same
  // text: no leading zero, no fraction or exponent, no "-0", within 64 bits (signed when negative).
  bool scalar(std::string_view& word) {
    skip_space();
    if (pos_ == text_.size()) return false;
    if (const char c = text_[pos_]; c == 'n' || c == 't' || c == 'f') {  // a number starts otherwise
      const std::string_view literal = c == 'n' ? "null" : c == 't' ? "true" : "false";
      if (text_.substr(pos_, literal.size()) != literal) return false;
      word = text_.substr(pos_, literal.size());
      pos_ += literal.size();
      return true;
    }
    const std::size_t first = pos_;
    const bool negative = pos_ < text_.size() && text_[pos_] == '-';
    if (negative) ++pos_;
    const std::size_t digits = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    const std::size_t count = pos_ - digits;
    if (count == 0 || count > 19 || (text_[digits] == '0' && (count > 1 || negative))) return false;
    if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) return false;
    const std::uint64_t value = magnitude(text_.substr(digits, count));
    if (negative && value > (std::uint64_t{1} << 63)) return false;
    word = text_.substr(first, pos_ - first);
    return true;
  }

  // At most 19 digits: fits 64 bits.
  static std::uint64_t magnitude(std::string_view digits) {
    std::uint64_t value = 0;
    for (const char c : digits) value = value * 10 + static_cast<std::uint64_t>(c - '0');
    return value;
  }

  // A string of printable ASCII without escapes: the same bytes to nlohmann, and in its dump.
  bool string(std::string_view& out) {
    if (!consume('"')) return false;
    const std::size_t first = pos_;
    for (; pos_ < text_.size(); ++pos_) {
      const auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        out = text_.substr(first, pos_ - first);
        ++pos_;
        return true;
      }
      if (c == '\\' || c < 0x20 || c > 0x7E) return false;
    }
    return false;
  }

  bool consume(char c) {
    skip_space();
    if (pos_ == text_.size() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }

  char peek() {
    skip_space();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' || text_[pos_] == '\t')) {
      ++pos_;
    }
  }

  // Reading a file through a window: where nothing read is in use any more (at the start of a
  // tensor, a skipped entry, an output, a key of the plan or of an output), the text ahead is
  // topped up to the window's ahead() bytes. The window's end reads as the text's end: an object cut there
  // cannot close, so the scan gives up rather than read a cut token as a whole one, and a plan with
  // an object longer than that is left to the full reader.
  void top_up() {
    if (window_ != nullptr && !window_->at_end() && text_.size() - pos_ < window_->ahead()) slide();
  }
  void slide() {
    window_->slide(pos_);
    text_ = window_->text();
    pos_ = 0;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::vector<Level> levels_;  // by depth
  std::string record_;         // the record being formatted, reused
  FileWindow* window_ = nullptr;
};

}  // namespace

bool read_plain_plan(std::string_view text, PlainPlan plan) {
  PlainPlanScanner scanner(text);
  return scanner.read(plan);
}

bool read_plain_plan(FileWindow& window, PlainPlan plan) {
  PlainPlanScanner scanner(window);
  return scanner.read(plan);
}

}  // namespace shardwise::plan::detail
