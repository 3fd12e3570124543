#include <shardwise/plan/name.hpp>

#include <algorithm>
#include <cstring>
#include <ostream>

namespace shardwise::plan {
namespace {

// Large enough that a Pro-sized plan's 20 MB of names take few blocks, small enough that a small
// plan does not notice.
constexpr std::size_t kBlockBytes = std::size_t{1} << 20;

}  // namespace

std::string_view NameArena::add(std::string_view text) {
  const std::size_t need = text.size() + 1;
  if (need > left_) {
    const std::size_t size = std::max(need, kBlockBytes);
    blocks_.push_back(std::make_unique_for_overwrite<char[]>(size));
    next_ = blocks_.back().get();
    left_ = size;
  }
  char* out = next_;
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  next_ += need;
  left_ -= need;
  return {out, text.size()};
}

Name::Name(std::string_view text) {
  if (text.empty()) return;
  char* copy = new char[text.size() + 1];
  std::memcpy(copy, text.data(), text.size());
  copy[text.size()] = '\0';
  data_ = copy;
  size_ = static_cast<std::uint32_t>(text.size());
  owned_ = true;
}

std::ostream& operator<<(std::ostream& out, const Name& name) { return out << name.view(); }

}  // namespace shardwise::plan
