#pragma once
// What a rules file says it accepts (`accepts:`, docs/rules.md "What the rules accept"), judged
// against a checkpoint's headers: each tensor's name and dtype. No tensor data is read.

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shardwise/rules/rules.hpp>
#include <shardwise/rules/tensor_header.hpp>

namespace shardwise::rules {

// How a checkpoint compares with one rules file's `accepts:`.
struct AcceptsVerdict {
  bool declared = false;  // the rules (or a file they extend) have an `accepts:` section
  bool fits = false;      // declared, and every condition holds
  // One entry per condition, by its name: those that hold ("FP8 weights", "no GPTQ packing") and
  // those that do not, with the evidence ("refuses GPTQ packing: layers.0.attn.wq_a.qweight (I32)").
  std::vector<std::string> met;
  std::vector<std::string> unmet;
  // `defer_to:`: bundled rules preferred to these when both fit (a format's general rules defer
  // to a model's own, which fit the same tensors).
  std::vector<std::string> defer_to;
};

// The `accepts:` section of a rules file, or of the nearest file of its `extends` chain that has
// one, compiled for judging checkpoints.
class Accepts {
 public:
  // Of the rules `value` names (a bundled name or a path, read as load_named_rules reads it), or
  // of the rules text `yaml` shown as `display_name`. Problems of the file are Rules::load_*'s to
  // report: load the rules first; a section with problems counts as absent here.
  static Accepts of_named_rules(const std::string& value);
  static Accepts of_text(std::string_view yaml, const std::string& display_name);
  // Of rules already loaded (their section was read then): the same as of_text of their text.
  static Accepts of_rules(const Rules& rules);

  Accepts(Accepts&&) noexcept;
  Accepts& operator=(Accepts&&) noexcept;
  ~Accepts();

  bool declared() const;
  AcceptsVerdict judge(std::span<const TensorHeader> tensors) const;
  // The verdicts of several rules files on the same tensors, each as its judge() gives it: every
  // name is searched once for all their conditions (choosing among the bundled rules judges them all).
  static std::vector<AcceptsVerdict> judge_all(std::span<const Accepts* const> accepts,
                                               std::span<const TensorHeader> tensors);
  // "requires FP8 weights, ...; forbids GPTQ packing", for `rules check`; "" when not declared.
  std::string describe() const;

  struct Section;  // src/rules/accepts.hpp

 private:
  explicit Accepts(std::shared_ptr<const Section> section);
  std::shared_ptr<const Section> section_;
};

}  // namespace shardwise::rules
