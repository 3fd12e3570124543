#pragma once
// Name templates, the small language the rules write names in: literal text with `{field}`
// placeholders from a fixed set. `output.file` ("model{rank}-mp{mp}.safetensors", numbers) and a
// block-scaled transform's companion ("{stem}.scale", names) are both templates; this is their one
// parser, expander and matcher.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace re2 {
class RE2;
}

namespace shardwise::rules {

// The fields of `output.file`, in the order expand() and match() take and give their values.
inline constexpr std::array<std::string_view, 2> kOutputFileFields = {"rank", "mp"};
inline constexpr std::size_t kRankField = 0;
inline constexpr std::size_t kMpField = 1;
// The fields of a companion name: the tensor's name, and that name without its last component.
inline constexpr std::array<std::string_view, 2> kCompanionFields = {"name", "stem"};
inline constexpr std::size_t kNameField = 0;
inline constexpr std::size_t kStemField = 1;

// A name that has a template's shape: the literal text with a number at each placeholder.
struct NameMatch {
  enum class Fit {
    no,               // not this template's shape
    yes,              // `values` holds the numbers
    number_too_large  // the shape fits, but the number `digits` of `field` exceeds 2^64-1
  };
  Fit fit = Fit::no;
  std::vector<std::uint64_t> values;  // Fit::yes: by field, 0 for a field the template does not use
  std::string_view field;             // Fit::number_too_large: the field's name and its digits
  std::string digits;
};

class NameTemplate {
 public:
  // A template of no placeholder that expands to "" (mirrored output has no output.file).
  NameTemplate() = default;

  struct Parsed;
  // Reads `text` against the allowed `fields` (names without braces, which must outlive the
  // template). `subject` names the template in the message, which the caller reports at the
  // template's FILE:LINE:COL: "SUBJECT has an unknown placeholder '{x}' (known: {rank}, {mp})",
  // '{x' without a '}'. A '}' alone is literal text.
  static Parsed parse(std::string_view text, std::span<const std::string_view> fields,
                      std::string_view subject);

  const std::string& text() const noexcept { return text_; }
  bool uses(std::size_t field) const;

  // The name for these values, values[i] for fields[i] (every field, used or not).
  std::string expand(std::span<const std::string_view> values) const;
  std::string expand_numbers(std::span<const std::uint64_t> values) const;  // values in decimal

  // The same template with `field` written as `value` (then a literal): a name of one known mp.
  NameTemplate with(std::size_t field, std::string_view value) const;

  // Whether `name` is what expand_numbers() gives for some values: the literal text, a decimal
  // number with no leading zero at each placeholder, the same number where a field repeats.
  // Literal text is matched as is (regex metacharacters included) by RE2, in time linear in the
  // name. When a field repeats next to literal digits, the first way of reading the digits
  // (each placeholder taking as many as it can) is the one checked.
  NameMatch match(std::string_view name) const;

 private:
  struct Part {
    std::string literal;        // text before the placeholder (the last part: text after the last one)
    std::size_t field = kNone;  // kNone: the last part, no placeholder
  };
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

  void compile();

  std::string text_;
  std::span<const std::string_view> fields_;
  std::vector<Part> parts_;
  std::shared_ptr<const re2::RE2> numbers_;  // the parts as a regex, one group per placeholder
};

struct NameTemplate::Parsed {
  std::optional<NameTemplate> name_template;  // set when `error` is empty
  std::string error;
};

}  // namespace shardwise::rules
