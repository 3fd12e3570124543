// The plan formats written piece by piece: a plan bigger than one piece (1 MiB) arrives in several
// pieces that together are the whole document, nothing lost or repeated at the seams.

#include <set>

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <shardwise/core/printable.hpp>
#include <shardwise/safetensors/checkpoint.hpp>

#include "plan/plan_fixture.hpp"

using namespace shardwise;
using namespace shardwise::test;

TEST_CASE("a large plan is written in pieces that join into the whole text and JSON") {
  TempDir dir;
  std::vector<TensorSpec> tensors;
  for (int i = 0; i < 6000; ++i) {
    tensors.push_back({fmt::format("blk.{:05}.col.weight", i), st::DType::BF16, {8, 4}});
    tensors.push_back({fmt::format("blk.{:05}.items.{}.row.weight", i / 4, i % 4), st::DType::BF16, {8, 4}});
  }
  write_checkpoint_file(dir / "a.safetensors", tensors);
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  const plan::Plan plan = plan::plan_checkpoint(checkpoint, rules, {2, {}});

  std::vector<std::string> pieces;
  const plan::TextSink keep = [&pieces](std::string_view piece) { pieces.emplace_back(piece); };

  plan::write_plan_json(plan, {}, keep);
  REQUIRE(pieces.size() > 1);
  std::string joined;
  for (const std::string& piece : pieces) {
    CHECK(piece.size() < (std::size_t{3} << 19));  // about a MiB each
    joined += piece;
  }
  const nlohmann::json json = nlohmann::json::parse(joined);
  std::size_t listed = 0;
  for (const auto& output : json.at("outputs")) listed += output.at("tensors").size();
  CHECK(listed == 6000 * 2 + 6000);  // col split over both ranks, items owned by one
  CHECK(json.at("totals").at("tensors") == listed);

  pieces.clear();
  plan::write_plan_text(plan, {}, keep);
  REQUIRE(pieces.size() > 1);
  joined.clear();
  for (const std::string& piece : pieces) joined += piece;
  std::size_t rows = 0;
  for (std::size_t at = joined.find("\n  blk."); at != std::string::npos;
       at = joined.find("\n  blk.", at + 1))
    ++rows;
  CHECK(rows == tensors.size());
  CHECK(joined.ends_with("side files: none\n"));
}

TEST_CASE("a choice parameter is shown by its word in the text, the JSON and the summary") {
  TempDir dir;
  write_checkpoint_file(dir / "a.safetensors", {{"blk.0.col.weight", st::DType::BF16, {8, 4}}});
  std::string text = kPlanRules;
  const std::string params = "params:\n";
  text.insert(text.find(params) + params.size(), "  kind: {choices: [fp4, fp8], default: fp4, help: how}\n");
  const rules::Rules rules = rules::Rules::load_text(text, "plan-test.yaml");
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  // The value is the choice's index: fp8 is the second.
  const plan::Plan plan = plan::plan_checkpoint(checkpoint, rules, {2, {{"kind", 1}}});
  REQUIRE(plan.params.at("kind") == 1);

  CHECK_THAT(plan::format_plan_text(plan), Catch::Contains("\nparams: kind=fp8 mp=2 n_items=4\n"));
  CHECK_THAT(plan::format_plan_summary(plan), Catch::Contains("\nparams: kind=fp8 mp=2 n_items=4\n"));
  CHECK_THAT(plan::format_plan_json(plan),
             Catch::Contains(R"("params": {"kind": "fp8", "mp": 2, "n_items": 4},)"));
  CHECK(plan::plan_to_json(plan).at("params") == nlohmann::json{{"kind", "fp8"}, {"mp", 2}, {"n_items", 4}});
}

TEST_CASE("a large plan's text measures its columns over every row, the last ones included") {
  // The rows of a large plan are measured in two halves: the longest name and the only row of a
  // rule (`rep`, replicated) come last, and still set the column's width and the legend.
  TempDir dir;
  std::vector<TensorSpec> tensors;
  for (int i = 0; i < 9000; ++i)
    tensors.push_back({fmt::format("blk.{:05}.col.weight", i), st::DType::BF16, {8, 4}});
  const std::string longest = "blk.zz." + std::string(60, 'w') + ".rep.weight";
  tensors.push_back({longest, st::DType::BF16, {8, 4}});
  write_checkpoint_file(dir / "a.safetensors", tensors);
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  const plan::Plan plan = plan::plan_checkpoint(checkpoint, rules, {2, {}});
  REQUIRE(plan.sources.size() == 9001);

  const std::string text = plan::format_plan_text(plan);
  // The heading's OUTPUT column starts after the longest source name and the two spaces between columns.
  const std::size_t heading = text.find("\n  SOURCE");
  REQUIRE(heading != std::string::npos);
  const std::size_t line_end = text.find('\n', heading + 1);
  const std::string heading_line = text.substr(heading + 1, line_end - heading - 1);
  CHECK(heading_line.find("OUTPUT") == 2 + longest.size() + 2);
  CHECK_THAT(text, Catch::Contains("\nrules: 2 named above\n"));  // table[col] and table[rep]
}

TEST_CASE("names with quotes, backslashes and control bytes anywhere are escaped in the JSON and the text") {
  // Names are scanned eight bytes at a time: each special byte at every place of a short and a long
  // name, among printable bytes, UTF-8 included.
  TempDir dir;
  std::vector<TensorSpec> tensors;
  for (const char special : {'"', '\\', '\x01', '\x1f', '\x7f'}) {
    for (const std::size_t length : {3, 8, 21}) {
      for (std::size_t at = 0; at < length; ++at) {
        std::string key(length, 'k');
        key[at] = special;
        if (length == 21) key.insert(at < 10 ? 19 : 0, "\xc3\xa9");
        tensors.push_back({key + ".weight", st::DType::BF16, {8, 4}});
      }
    }
  }
  write_checkpoint_file(dir / "a.safetensors", tensors);
  const rules::Rules rules = rules::Rules::load_text(kPlanRules, "plan-test.yaml");
  const st::Checkpoint checkpoint = st::Checkpoint::open(dir.str());
  const plan::Plan plan = plan::plan_checkpoint(checkpoint, rules, {2, {}});

  const nlohmann::json json = plan::plan_to_json(plan);
  std::set<std::string> listed;
  for (const auto& tensor : json.at("outputs").at(0).at("tensors")) listed.insert(tensor.at("name"));
  const std::string text = plan::format_plan_text(plan);
  for (const TensorSpec& t : tensors) {
    INFO(printable(t.name));
    CHECK(listed.count(t.name) == 1);
    CHECK_THAT(text, Catch::Contains("\n  " + printable(t.name) + " "));
  }
}
