// The plan's compact names and shapes (plan/name.hpp, plan/shape.hpp): they must behave as the
// std::string and std::vector they replace, whether a name lives in the plan's arena or owns its
// bytes, and whether a shape fits in place or needs the heap (safetensors allows any rank).

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <shardwise/plan/name.hpp>
#include <shardwise/plan/shape.hpp>

using namespace shardwise;
using plan::Name;
using plan::NameArena;
using plan::Shape;

TEST_CASE("a name borrowed from the arena and one owning its bytes compare, copy and print alike") {
  NameArena arena;
  const std::string text = "layers.3.ffn.experts.17.w1.qweight";
  const Name borrowed = Name::borrowed(arena.add(text));
  const Name owned = text;
  CHECK(borrowed.data() != text.data());
  CHECK(borrowed == owned);
  CHECK(borrowed == text);
  CHECK(std::string(borrowed.c_str()) == text);
  CHECK(fmt::format("<{}>", borrowed) == "<" + text + ">");
  CHECK(owned + ".x" == text + ".x");

  Name copy = owned;  // owns a copy: outlives the original
  {
    Name moved = std::move(copy);
    CHECK(moved == text);
    CHECK(copy.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
    copy = moved;
  }
  CHECK(copy == text);
  CHECK(Name::borrowed(arena.add("a")) < Name("b"));
  CHECK(Name() == "");
}

TEST_CASE("the arena keeps every name in place across blocks, a name larger than a block included") {
  NameArena arena;
  std::vector<std::string> texts;
  std::vector<Name> names;
  for (int i = 0; i < 40000; ++i) texts.push_back(fmt::format("blk.{}.attn_{}.weight", i, i * 7));
  texts.push_back(std::string(3 << 20, 'x'));  // 3 MiB: its own block
  texts.push_back("after.the.large.one");
  for (const std::string& t : texts) names.push_back(Name::borrowed(arena.add(t)));
  for (std::size_t i = 0; i < texts.size(); ++i) {
    REQUIRE(names[i] == texts[i]);
    REQUIRE(names[i].c_str()[texts[i].size()] == '\0');
  }
}

TEST_CASE("names order as strings do, as keys of a sorted map") {
  std::map<Name, int> by_name;
  NameArena arena;
  for (const char* n : {"b.2", "a.10", "a.9", "b"}) by_name.emplace(Name::borrowed(arena.add(n)), 0);
  std::vector<std::string> order;
  for (const auto& [name, unused] : by_name) order.push_back(name);
  CHECK(order == std::vector<std::string>{"a.10", "a.9", "b", "b.2"});
}

TEST_CASE("a shape holds any rank: in place up to kInline dims, on the heap beyond") {
  for (const std::size_t rank :
       {std::size_t{0}, std::size_t{1}, Shape::kInline, Shape::kInline + 1, std::size_t{1024}}) {
    st::Shape dims;
    for (std::size_t d = 0; d < rank; ++d) dims.push_back(d * 3 + 1);
    Shape shape = dims;
    REQUIRE(shape.size() == rank);
    CHECK(shape == dims);
    CHECK(st::Shape(shape) == dims);
    Shape copy = shape;
    CHECK(copy == shape);
    Shape moved = std::move(copy);
    CHECK(moved == dims);
    if (rank > 0) {
      moved.back() = 99;
      CHECK(!(moved == shape));  // a copy does not share its dims
      CHECK(shape.back() == dims.back());
    }
    moved.push_back(5);  // grows past kInline when it was full
    CHECK(moved.size() == rank + 1);
    CHECK(moved.back() == 5);
    CHECK(st::shape_text(moved).front() == '[');
  }
  Shape assigned{1, 2};
  assigned = Shape{4, 5, 6, 7, 8};
  CHECK(assigned == st::Shape{4, 5, 6, 7, 8});
  assigned = {9};
  CHECK(assigned == st::Shape{9});
}
