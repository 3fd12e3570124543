#pragma once
// A stable sort that takes advantage of runs already in order. A header lists its tensors in data
// order, which writers make name order within each dtype; an index is usually written sorted; a
// checkpoint's files are each sorted by name. So a few merges, or one pass, replace a full sort.

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace shardwise::st::detail {

// Sorts `items` by `less`, keeping the order of equal items (a natural merge sort: O(n) on sorted
// input, O(n log n) at worst).
template <class T, class Allocator, class Less>
void sort_runs(std::vector<T, Allocator>& items, Less less) {
  std::vector<std::size_t> bounds{0};  // where each run in order begins, then the end
  for (std::size_t i = 1; i < items.size(); ++i) {
    if (less(items[i], items[i - 1])) bounds.push_back(i);
  }
  bounds.push_back(items.size());
  if (bounds.size() <= 2) return;  // one run: already in order
  std::vector<T, Allocator> merged(items.size());
  while (bounds.size() > 2) {
    std::vector<std::size_t> next{0};
    for (std::size_t k = 0; k + 1 < bounds.size(); k += 2) {
      const auto first = items.begin() + static_cast<std::ptrdiff_t>(bounds[k]);
      const auto middle = items.begin() + static_cast<std::ptrdiff_t>(bounds[k + 1]);
      const auto last =
          k + 2 < bounds.size() ? items.begin() + static_cast<std::ptrdiff_t>(bounds[k + 2]) : middle;
      std::merge(first, middle, middle, last, merged.begin() + static_cast<std::ptrdiff_t>(bounds[k]), less);
      next.push_back(bounds[k + 2 < bounds.size() ? k + 2 : k + 1]);
    }
    items.swap(merged);
    bounds = std::move(next);
  }
}

}  // namespace shardwise::st::detail
