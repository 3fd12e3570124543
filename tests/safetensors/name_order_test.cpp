// sort_runs, the natural merge sort the reader uses for name order: it must agree with
// std::stable_sort on any input, whatever runs it holds.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

// Internal to the reader.
#include "safetensors/name_order.hpp"

using shardwise::st::detail::sort_runs;

namespace {

using Item = std::pair<int, int>;  // (key, position in the input): equal keys must keep their order
bool by_key(const Item& a, const Item& b) { return a.first < b.first; }

std::vector<Item> numbered(const std::vector<int>& keys) {
  std::vector<Item> items;
  for (std::size_t i = 0; i < keys.size(); ++i) items.emplace_back(keys[i], static_cast<int>(i));
  return items;
}

void check_like_stable_sort(const std::vector<int>& keys) {
  auto expected = numbered(keys), actual = numbered(keys);
  std::stable_sort(expected.begin(), expected.end(), by_key);
  sort_runs(actual, by_key);
  CHECK(actual == expected);
}

}  // namespace

TEST_CASE("sort_runs sorts stably, whatever the runs") {
  check_like_stable_sort({});
  check_like_stable_sort({1});
  check_like_stable_sort({1, 2, 3, 4});
  check_like_stable_sort({4, 3, 2, 1});
  check_like_stable_sort({2, 2, 1, 1, 2, 1});
  check_like_stable_sort({1, 5, 9, 2, 6, 10, 3, 7, 11});  // three runs: an odd one left over
  std::mt19937 random(20261128);
  for (int round = 0; round < 500; ++round) {
    std::vector<int> keys(random() % 300);
    const int spread = 1 + static_cast<int>(random() % 50);  // small spreads: many equal keys
    for (auto& key : keys) key = static_cast<int>(random() % static_cast<unsigned>(spread));
    if (round % 3 == 0) {  // a few sorted runs, as a header in data order has
      const std::size_t cuts = 1 + random() % 5;
      for (std::size_t c = 0; c < cuts && !keys.empty(); ++c) {
        const auto from = keys.begin() + static_cast<std::ptrdiff_t>(random() % keys.size());
        std::sort(from, keys.end());
      }
    }
    INFO("round " << round);
    check_like_stable_sort(keys);
  }
}
