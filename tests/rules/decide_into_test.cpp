// Rules::decide_into, the planner's way to decide 100,000s of names into a few reused Decisions,
// against Rules::decide: every bundled rules file, every tensor name of the synthetic checkpoints
// (tools/deepseek_v4_inventory.hpp, tools/official_inventory.hpp), decided one after another into
// one Decision that first held another name's decision with its trail: each time the same decision,
// field by field, as deciding the name alone.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/rules/rules.hpp>

#include "../../tools/deepseek_v4_inventory.hpp"
#include "../../tools/official_inventory.hpp"

using shardwise::rules::Decision;
using shardwise::rules::Rules;

namespace {

// Every field of a decision, chunks included, as one text to compare.
std::string text_of(const Decision& d) {
  std::string text = fmt::format(
      "kind {} source '{}' normalized '{}' output '{}' reason '{}' rule {} key {} split {} units {} '{}' "
      "transform {} companion_of {} layout {} member {} group '{}' trail {}",
      static_cast<int>(d.kind), d.source, d.normalized, d.output, d.reason, fmt::ptr(d.rule),
      d.key ? "'" + *d.key + "'" : std::string("none"), static_cast<int>(d.split), d.split_units,
      d.units_param, fmt::ptr(d.transform), fmt::ptr(d.companion_of), fmt::ptr(d.layout), fmt::ptr(d.member),
      d.group, d.trail.size());
  if (d.owner) {
    const auto& o = *d.owner;
    text += fmt::format(" owner {} of {} '{}' rule {} [{}, {}) partial {}", o.index,
                        o.count ? std::to_string(*o.count) : "none", o.count_param, fmt::ptr(o.rule),
                        o.index_begin, o.index_end, o.partial);
  }
  if (d.fuse) {
    text += fmt::format(" fuse {} '{}' part {} index {}", fmt::ptr(d.fuse->rule), d.fuse->output,
                        d.fuse->part, d.fuse->index);
  }
  for (const auto& chunk : d.chunks) {
    text += fmt::format(" chunk {} {} [{}, +{}) of {}: ({})", fmt::ptr(chunk.rule), chunk.chunk, chunk.first,
                        chunk.size, chunk.total, text_of(*chunk.decision));
  }
  return text;
}

// The decision's text, or the error deciding threw.
template <typename Decide>
std::string outcome(const Decide& decide) {
  try {
    return decide();
  } catch (const shardwise::Error& e) {
    return fmt::format("error {}: {}", static_cast<int>(e.kind()), e.what());
  }
}

// The tensor names of every synthetic checkpoint the project generates.
std::vector<std::string> synthetic_names() {
  std::vector<std::string> names;
  for (const auto style : {gen::Style::inference, gen::Style::hf}) {
    for (const bool act_order : {false, true}) {
      gen::InventoryOptions options;
      options.style = style;
      options.act_order = act_order;
      for (const auto& t : gen::build_inventory(gen::config_named("tiny"), options)) names.push_back(t.name);
    }
  }
  for (const auto format :
       {gen::official::Format::v3, gen::official::Format::v32, gen::official::Format::v4}) {
    for (const auto& t : gen::official::build_official_inventory(format, {})) names.push_back(t.name);
  }
  return names;
}

// Values for the parameters a file requires (a number, or a choice's first word), mp 4.
shardwise::rules::Params params_for(const Rules& rules) {
  shardwise::rules::Params given{{"mp", 4}};
  for (const auto& param : rules.params()) {
    if (!param.default_value && !param.inferred) given[param.name] = param.choices.empty() ? 8 : 0;
  }
  return rules.resolve_params(given);
}

}  // namespace

TEST_CASE("decide_into decides every synthetic name as decide does, whatever the Decision held before") {
  const std::vector<std::string> names = synthetic_names();
  REQUIRE(names.size() > 1000);
  for (const auto& bundled : shardwise::rules::bundled_rules()) {
    INFO(bundled.name);
    const Rules rules = Rules::load_text(bundled.text, bundled.file_name);
    const auto params = params_for(rules);
    // Held before: a recorded decision (trail and all) of another name.
    Decision reused = rules.decide(names.back(), params, Rules::Trail::record);
    std::size_t placed = 0;
    for (const std::string& name : names) {
      INFO(name);
      const std::string alone =
          outcome([&] { return text_of(rules.decide(name, params, Rules::Trail::omit)); });
      const std::string into = outcome([&] {
        rules.decide_into(name, params, reused);
        return text_of(reused);
      });
      REQUIRE(into == alone);
      if (reused.kind == Decision::Kind::place) ++placed;
    }
    CHECK(placed > 0);
  }
}
