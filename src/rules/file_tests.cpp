// A rules file's own tests (`tests:`): tensor names with the decision their author expects, read
// with the file and run by `shardwise rules check` and by the project's tests for bundled rules.
#include <algorithm>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/ranks.hpp>

#include <shardwise/rules/suggest.hpp>
#include "rules/loader.hpp"

namespace shardwise::rules {

namespace detail {

namespace {

const std::vector<std::string> kSplits = {"out", "in", "replicate", "whole"};

std::optional<bool> read_bool(YamlReader& in, const YAML::Node& node, const std::string& what) {
  const auto text = in.string_value(node, what);
  if (!text) return std::nullopt;
  if (*text == "true") return true;
  if (*text == "false") return false;
  in.error(node, fmt::format("{} must be true or false, got '{}'", what, *text));
  return std::nullopt;
}

void read_ranks(YamlReader& in, const YAML::Node& node, RulesTest& test) {
  if (node.IsScalar() && node.Scalar() == "all") {
    test.all_ranks = true;
    return;
  }
  if (!node.IsSequence()) {
    in.error(node, fmt::format("'ranks' of a test must be a list of ranks or all, got {}", node_kind(node)));
    return;
  }
  std::vector<std::uint64_t> ranks;
  for (const auto& item : node) {
    if (const auto rank = in.uint_value(item, "a rank of a test")) ranks.push_back(*rank);
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  test.ranks = std::move(ranks);
}

void read_expect(YamlReader& in, const YAML::Node& node, RulesTest& test) {
  const std::vector<std::string> keys = {"output", "ranks", "split", "skip", "reject", "rule", "transform"};
  if (!in.check_map(node, "expect of a test", keys)) return;
  if (node.size() == 0)
    in.error(node, fmt::format("expect of a test is empty (expect any of: {})", fmt::join(keys, ", ")));
  test.output = in.string_field(node, "output", "expect of a test", false);
  if (const YAML::Node ranks = YamlReader::field(node, "ranks"); ranks.IsDefined())
    read_ranks(in, ranks, test);
  if (const YAML::Node split = YamlReader::field(node, "split"); split.IsDefined()) {
    test.split = in.string_value(split, "'split' of expect");
    if (test.split && std::find(kSplits.begin(), kSplits.end(), *test.split) == kSplits.end()) {
      in.error(
          split,
          fmt::format("'split' of expect must be out, in, replicate or whole (owned by one rank), got '{}'{}",
                      *test.split, did_you_mean(*test.split, kSplits)));
    }
  }
  if (const YAML::Node skip = YamlReader::field(node, "skip"); skip.IsDefined())
    test.skip = read_bool(in, skip, "'skip' of expect");
  if (const YAML::Node reject = YamlReader::field(node, "reject"); reject.IsDefined()) {
    test.reject = read_bool(in, reject, "'reject' of expect");
  }
  test.rule = in.string_field(node, "rule", "expect of a test", false);
  test.transform = in.string_field(node, "transform", "expect of a test", false);
}

void read_test_params(YamlReader& in, const YAML::Node& node, const CompiledRules& rules, RulesTest& test) {
  if (!in.check_open_map(node, "params of a test")) return;
  std::vector<std::string> known;
  for (const auto& param : rules.params) known.push_back(param.name);
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string& name = entry.first.Scalar();
    if (name == "mp") {
      in.error(entry.first, "give mp as the test's own 'mp:', not under params");
    } else if (std::find(known.begin(), known.end(), name) == known.end()) {
      in.error(entry.first,
               fmt::format("unknown parameter '{}' in a test{}", name, did_you_mean(name, known)));
    }
    const auto param =
        std::find_if(rules.params.begin(), rules.params.end(), [&](const auto& p) { return p.name == name; });
    if (param != rules.params.end() && !param->choices.empty()) {
      // A choice is written as its word.
      const auto word = in.string_value(entry.second, fmt::format("parameter '{}' of a test", name));
      if (!word) continue;
      try {
        test.params[name] = parse_param_value(*param, *word);
      } catch (const Error& e) {
        in.error(entry.second, fmt::format("parameter '{}' of a test: {}", name, e.what()));
      }
    } else if (const auto value =
                   in.uint_value(entry.second, fmt::format("parameter '{}' of a test", name))) {
      test.params[name] = *value;
    }
  }
}

// A test's `config:` as JSON: plain scalars as YAML reads them (null, true, false, numbers), the
// others as strings. The YAML was already bounded as a whole (check_expanded_size).
nlohmann::json config_json(const YAML::Node& node) {
  if (node.IsMap()) {
    nlohmann::json object = nlohmann::json::object();
    for (const auto& entry : node) {
      if (entry.first.IsScalar()) object[entry.first.Scalar()] = config_json(entry.second);
    }
    return object;
  }
  if (node.IsSequence()) {
    nlohmann::json array = nlohmann::json::array();
    for (const auto& item : node) array.push_back(config_json(item));
    return array;
  }
  if (!node.IsScalar()) return nullptr;
  const std::string& text = node.Scalar();
  if (node.Tag() == "?") {  // plain, not quoted
    if (text == "true" || text == "false") return text == "true";
    const nlohmann::json number = nlohmann::json::parse(text, nullptr, false);
    if (number.is_number()) return number;
  }
  return text;
}

}  // namespace

void read_tests(YamlReader& in, const YAML::Node& node, CompiledRules& out) {
  if (!in.check_list(node, "tests")) return;
  for (const auto& item : node) {
    if (!in.check_map(item, "test", {"tensor", "mp", "params", "config", "expect"})) continue;
    RulesTest test;
    test.where = in.where(item);
    test.tensor = in.string_field(item, "tensor", "test", true).value_or("");
    if (const auto mp = in.uint_field(item, "mp", "test", false)) {
      if (*mp == 0) in.error(YamlReader::field(item, "mp"), "mp of a test must be at least 1");
      test.mp = std::max<std::uint64_t>(*mp, 1);
    }
    if (const YAML::Node params = YamlReader::field(item, "params"); params.IsDefined()) {
      read_test_params(in, params, out, test);
    }
    if (const YAML::Node config = YamlReader::field(item, "config"); config.IsDefined()) {
      if (in.check_open_map(config, "config of a test")) test.config = config_json(config).dump();
    }
    if (const YAML::Node expect = YamlReader::field(item, "expect"); expect.IsDefined()) {
      read_expect(in, expect, test);
    } else {
      in.error(item, "test is missing required key 'expect'");
    }
    out.tests.push_back(std::move(test));
  }
}

}  // namespace detail

namespace {

// What the rules decided about a test's tensor, in the terms a test expects.
struct Outcome {
  std::string kind;    // "placed", "skipped", "rejected", "unmatched"
  std::string output;  // empty unless placed
  std::vector<std::uint64_t> ranks;
  std::string split;      // out, in, replicate, whole; empty unless placed
  std::string placement;  // why the ranks are unknown (an owner that cannot be placed), else empty
  std::string rule;       // the deciding rule's label, empty when unmatched
  std::string rule_where;
  std::string transform;  // the transform rule's label, "none" when placed without one
};

Outcome outcome_of(const Decision& d, std::uint64_t mp) {
  Outcome o;
  o.transform = d.transform != nullptr ? d.transform->rule.label : "none";
  if (d.rule != nullptr) {
    o.rule = d.rule->label;
    o.rule_where = d.rule->where.str();
  }
  switch (d.kind) {
    case Decision::Kind::skip:
      o.kind = "skipped";
      return o;
    case Decision::Kind::reject:
      o.kind = "rejected";
      return o;
    case Decision::Kind::unmatched:
      o.kind = "unmatched";
      return o;
    case Decision::Kind::place:
      break;
  }
  o.kind = "placed";
  o.output = d.output;
  if (!d.owner) {
    o.split = split_name(d.split);
    o.ranks.resize(mp);
    std::iota(o.ranks.begin(), o.ranks.end(), std::uint64_t{0});
    return o;
  }
  o.split = "whole";
  const Ownership& owner = *d.owner;
  if (!owner.count) {
    // `default: infer`: the count is each scope's own, which only a checkpoint tells.
    o.placement =
        fmt::format("{} is taken from the checkpoint: give it in the test's params", owner.count_param);
  } else if (*owner.count < mp || *owner.count % mp != 0) {
    o.placement = fmt::format("{}={} is not a multiple of mp={}", owner.count_param, *owner.count, mp);
  } else if (owner.index >= *owner.count) {
    o.placement =
        fmt::format("index {} is out of range ({}={})", owner.index, owner.count_param, *owner.count);
  } else {
    o.ranks.push_back(plan::owner_rank(owner.index, *owner.count, mp));
  }
  return o;
}

std::string show_ranks(const std::vector<std::uint64_t>& ranks, std::uint64_t mp) {
  if (ranks.size() == mp && mp > 1) return fmt::format("all ({}-{})", 0, mp - 1);
  return fmt::format("[{}]", fmt::join(ranks, ", "));
}

// A label ("ownership[items]", "skip: copy") or the name it carries ("items", "copy").
bool same_rule(const std::string& expected, const std::string& label) {
  if (expected == label) return true;
  if (const auto open = label.find('['); open != std::string::npos && label.ends_with(']')) {
    return expected == label.substr(open + 1, label.size() - open - 2);
  }
  if (const auto colon = label.find(": "); colon != std::string::npos)
    return expected == label.substr(colon + 2);
  return false;
}

// Each expectation the outcome does not meet, as "what: expected X, the rules decide Y".
std::vector<std::string> mismatches(const RulesTest& t, const Outcome& o) {
  std::vector<std::string> out;
  const auto decided_output = o.kind == "placed" ? fmt::format("'{}'", o.output) : "none (" + o.kind + ")";
  if (t.output && (o.kind != "placed" || *t.output != o.output)) {
    out.push_back(fmt::format("output: expected '{}', the rules decide {}", *t.output, decided_output));
  }
  if (t.ranks || t.all_ranks) {
    const std::string expected = t.all_ranks ? "all" : fmt::format("[{}]", fmt::join(*t.ranks, ", "));
    if (!o.placement.empty()) {
      out.push_back(
          fmt::format("ranks: expected {}, but the tensor cannot be placed: {}", expected, o.placement));
    } else if (t.all_ranks ? o.ranks.size() != t.mp : o.ranks != *t.ranks) {
      out.push_back(fmt::format("ranks: expected {}, the rules decide {}", expected,
                                o.kind == "placed" ? show_ranks(o.ranks, t.mp) : "none (" + o.kind + ")"));
    }
  }
  if (t.split && *t.split != o.split) {
    out.push_back(fmt::format("split: expected {}, the rules decide {}", *t.split,
                              o.kind == "placed" ? o.split : "none (" + o.kind + ")"));
  }
  if (t.skip && *t.skip != (o.kind == "skipped")) {
    out.push_back(fmt::format("skip: expected {}, the rules decide {}", *t.skip, o.kind));
  }
  if (t.reject && *t.reject != (o.kind == "rejected")) {
    out.push_back(fmt::format("reject: expected {}, the rules decide {}", *t.reject, o.kind));
  }
  if (t.transform &&
      (o.kind != "placed" ||
       (*t.transform == "none" ? o.transform != "none" : !same_rule(*t.transform, o.transform)))) {
    out.push_back(fmt::format("transform: expected '{}', the rules decide {}", *t.transform,
                              o.kind == "placed" ? "'" + o.transform + "'" : "none (" + o.kind + ")"));
  }
  if (t.rule && !same_rule(*t.rule, o.rule)) {
    out.push_back(fmt::format("rule: expected '{}', the deciding rule is {}", *t.rule,
                              o.rule.empty() ? "none (" + o.kind + ")" : "'" + o.rule + "'"));
  }
  return out;
}

}  // namespace

Rules::TestReport Rules::run_tests() const {
  TestReport report;
  for (const auto& test : impl_->tests) {
    ++report.run;
    Params given = test.params;
    given["mp"] = test.mp;
    std::string shown = fmt::format("mp={}", test.mp);
    for (const auto& [name, value] : test.params) {
      const auto param = std::find_if(impl_->params.begin(), impl_->params.end(),
                                      [&](const auto& p) { return p.name == name; });
      shown +=
          fmt::format(", {}={}", name,
                      param == impl_->params.end() ? std::to_string(value) : param_value_text(*param, value));
    }
    const std::string head = fmt::format("{}: test '{}' ({})", test.where.str(), test.tensor, shown);
    try {
      const ConfigFiles config =
          test.config ? ConfigFiles::texts({{"config.json", *test.config}}) : ConfigFiles::texts({});
      const Params params = resolve_params(given, config, ParamSource::Kind::test).values;
      const Decision decision = decide(test.tensor, params, Trail::omit);
      const Outcome outcome = outcome_of(decision, test.mp);
      if (outcome.kind == "unmatched") {
        report.failures.push_back(fmt::format("{}: no rule places it: {}", head, decision.reason));
        continue;
      }
      for (const auto& mismatch : mismatches(test, outcome)) {
        report.failures.push_back(fmt::format("{}: {} (deciding rule: {} at {})", head, mismatch,
                                              outcome.rule, outcome.rule_where));
      }
    } catch (const Error& e) {
      report.failures.push_back(fmt::format("{}: {}", head, e.what()));
    }
  }
  return report;
}

}  // namespace shardwise::rules
