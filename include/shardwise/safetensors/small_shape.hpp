#pragma once
// A tensor shape held compactly: up to kInline dims in place (every tensor of the checkpoints this
// project converts), more on the heap (safetensors allows any rank; the header parser accepts up to
// 1024). Half the bytes of a std::vector and its heap block, for the 100,000s of shapes a
// header of DeepSeek-V4-Pro's size lists and a plan holds. Reads like Shape (size, [], begin/end,
// ==, a span) and converts to one.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include <shardwise/safetensors/dtype.hpp>

namespace shardwise::st {

class SmallShape {
 public:
  static constexpr std::size_t kInline = 3;

  SmallShape() noexcept = default;
  SmallShape(std::initializer_list<std::uint64_t> dims) { assign(dims.begin(), dims.size()); }
  SmallShape(const Shape& dims) { assign(dims.data(), dims.size()); }  // NOLINT(google-explicit-constructor)
  explicit SmallShape(std::span<const std::uint64_t> dims) { assign(dims.data(), dims.size()); }
  SmallShape(const SmallShape& other) { assign(other.data(), other.size_); }
  SmallShape(SmallShape&& other) noexcept { take(other); }
  SmallShape& operator=(const SmallShape& other) {
    if (this != &other) {
      release();
      assign(other.data(), other.size_);
    }
    return *this;
  }
  SmallShape& operator=(SmallShape&& other) noexcept {
    if (this != &other) {
      release();
      take(other);
    }
    return *this;
  }
  ~SmallShape() { release(); }

  operator Shape() const { return Shape(begin(), end()); }  // NOLINT(google-explicit-constructor)

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::uint64_t* data() noexcept { return heap() ? u_.heap : u_.dims; }
  const std::uint64_t* data() const noexcept { return heap() ? u_.heap : u_.dims; }
  std::uint64_t* begin() noexcept { return data(); }
  std::uint64_t* end() noexcept { return data() + size_; }
  const std::uint64_t* begin() const noexcept { return data(); }
  const std::uint64_t* end() const noexcept { return data() + size_; }
  std::uint64_t& operator[](std::size_t i) noexcept { return data()[i]; }
  std::uint64_t operator[](std::size_t i) const noexcept { return data()[i]; }
  std::uint64_t& front() noexcept { return data()[0]; }
  std::uint64_t front() const noexcept { return data()[0]; }
  std::uint64_t& back() noexcept { return data()[size_ - 1]; }
  std::uint64_t back() const noexcept { return data()[size_ - 1]; }
  void push_back(std::uint64_t dim) {
    if (size_ == capacity()) grow(size_ + 1);
    data()[size_++] = dim;
  }
  void clear() noexcept { size_ = 0; }

  friend bool operator==(const SmallShape& a, const SmallShape& b) noexcept {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }
  friend bool operator==(const SmallShape& a, const Shape& b) noexcept {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }

 private:
  bool heap() const noexcept { return capacity_ > kInline; }
  std::size_t capacity() const noexcept { return heap() ? capacity_ : kInline; }
  void assign(const std::uint64_t* dims, std::size_t n) {
    size_ = 0;
    capacity_ = 0;
    if (n > kInline) grow(n);
    std::copy(dims, dims + n, data());
    size_ = static_cast<std::uint32_t>(n);
  }
  void grow(std::size_t n) {
    const std::size_t capacity = std::max(n, 2 * this->capacity());
    auto* dims = new std::uint64_t[capacity];
    std::copy(begin(), end(), dims);
    release();
    u_.heap = dims;
    capacity_ = static_cast<std::uint32_t>(capacity);
  }
  void take(SmallShape& other) noexcept {
    u_ = other.u_;
    size_ = other.size_;
    capacity_ = other.capacity_;
    other.size_ = 0;
    other.capacity_ = 0;
  }
  void release() noexcept {
    if (heap()) delete[] u_.heap;
    capacity_ = 0;
  }

  union Storage {
    std::uint64_t dims[kInline];
    std::uint64_t* heap;
  } u_{};
  std::uint32_t size_ = 0;
  std::uint32_t capacity_ = 0;  // above kInline: the heap array's; otherwise the dims are inline
};

}  // namespace shardwise::st
