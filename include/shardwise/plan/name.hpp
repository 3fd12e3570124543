#pragma once
// The plan's tensor names: a plan of DeepSeek-V4-Pro's size holds 450,000 of them (its sources and
// each rank's tensors), so they are not a std::string each (32 bytes and a heap block of ~48) but
// views into large blocks the plan owns (NameArena), 16 bytes each, with the same name shared by
// the ranks that hold a tensor. A Name made from a string (a test, a plan read back) owns a copy of
// it instead, so that code elsewhere can keep writing `t.name = "x"`.

#include <compare>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace shardwise::plan {

// Bytes appended and never moved: what add() returns stays valid as long as the arena lives.
class NameArena {
 public:
  // A copy of `text` followed by a NUL (for Name::c_str()).
  std::string_view add(std::string_view text);

 private:
  std::vector<std::unique_ptr<char[]>> blocks_;
  char* next_ = nullptr;
  std::size_t left_ = 0;
};

class Name {
 public:
  Name() noexcept = default;
  Name(std::string_view text);  // NOLINT(google-explicit-constructor): owns a copy
  Name(const std::string& text) : Name(std::string_view(text)) {}  // NOLINT(google-explicit-constructor)
  Name(const char* text) : Name(std::string_view(text)) {}         // NOLINT(google-explicit-constructor)
  // A name whose bytes (NUL-terminated, as NameArena::add gives them) outlive it and its copies.
  static Name borrowed(std::string_view text) noexcept { return Name(text.data(), text.size()); }

  Name(const Name& other) : Name(other.owned_ ? Name(other.view()) : borrowed(other.view())) {}
  Name(Name&& other) noexcept : data_(other.data_), size_(other.size_), owned_(other.owned_) {
    other.data_ = "";
    other.size_ = 0;
    other.owned_ = false;
  }
  Name& operator=(const Name& other) {
    if (this != &other) *this = Name(other);
    return *this;
  }
  Name& operator=(Name&& other) noexcept {
    if (this != &other) {
      release();
      data_ = other.data_;
      size_ = other.size_;
      owned_ = other.owned_;
      other.data_ = "";
      other.size_ = 0;
      other.owned_ = false;
    }
    return *this;
  }
  ~Name() { release(); }

  std::string_view view() const noexcept { return {data_, size_}; }
  operator std::string_view() const noexcept { return view(); }  // NOLINT(google-explicit-constructor)
  operator std::string() const { return std::string(view()); }   // NOLINT(google-explicit-constructor)
  std::string str() const { return std::string(view()); }
  const char* data() const noexcept { return data_; }
  const char* c_str() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t length() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const char* begin() const noexcept { return data_; }
  const char* end() const noexcept { return data_ + size_; }
  char operator[](std::size_t i) const noexcept { return data_[i]; }
  char front() const noexcept { return data_[0]; }
  char back() const noexcept { return data_[size_ - 1]; }

  std::size_t find(std::string_view s, std::size_t pos = 0) const noexcept { return view().find(s, pos); }
  std::size_t find(char c, std::size_t pos = 0) const noexcept { return view().find(c, pos); }
  std::size_t rfind(std::string_view s, std::size_t pos = std::string_view::npos) const noexcept {
    return view().rfind(s, pos);
  }
  std::size_t rfind(char c, std::size_t pos = std::string_view::npos) const noexcept {
    return view().rfind(c, pos);
  }
  std::string_view substr(std::size_t pos, std::size_t n = std::string_view::npos) const {
    return view().substr(pos, n);
  }
  bool starts_with(std::string_view s) const noexcept { return view().starts_with(s); }
  bool ends_with(std::string_view s) const noexcept { return view().ends_with(s); }
  int compare(std::string_view s) const noexcept { return view().compare(s); }

  friend bool operator==(const Name& a, const Name& b) noexcept { return a.view() == b.view(); }
  friend bool operator==(const Name& a, std::string_view b) noexcept { return a.view() == b; }
  friend bool operator==(const Name& a, const std::string& b) noexcept { return a.view() == b; }
  friend bool operator==(const Name& a, const char* b) noexcept { return a.view() == b; }
  friend std::strong_ordering operator<=>(const Name& a, const Name& b) noexcept {
    return a.view() <=> b.view();
  }
  friend std::strong_ordering operator<=>(const Name& a, std::string_view b) noexcept {
    return a.view() <=> b;
  }
  friend std::strong_ordering operator<=>(const Name& a, const std::string& b) noexcept {
    return a.view() <=> std::string_view(b);
  }
  friend std::string operator+(const Name& a, std::string_view b) {
    std::string s(a.view());
    s += b;
    return s;
  }
  friend std::string operator+(std::string_view a, const Name& b) {
    std::string s(a);
    s += b.view();
    return s;
  }

 private:
  Name(const char* data, std::size_t size) noexcept : data_(data), size_(static_cast<std::uint32_t>(size)) {}
  void release() noexcept {
    if (owned_) delete[] data_;
  }

  const char* data_ = "";
  std::uint32_t size_ = 0;
  bool owned_ = false;
};

std::ostream& operator<<(std::ostream& out, const Name& name);  // for test frameworks

}  // namespace shardwise::plan

template <>
struct fmt::formatter<shardwise::plan::Name> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(const shardwise::plan::Name& name, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(name.view(), ctx);
  }
};

template <>
struct std::hash<shardwise::plan::Name> {
  std::size_t operator()(const shardwise::plan::Name& name) const noexcept {
    return std::hash<std::string_view>()(name.view());
  }
};
