#include <shardwise/safetensors/writer.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <numeric>
#include <optional>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/header.hpp>

#include <shardwise/core/io.hpp>
#include "safetensors/json_escape.hpp"

namespace shardwise::st {

namespace {

constexpr std::string_view kMetadataKey = "__metadata__";

// write_at's largest pwrite: on the test machine's kernel (Linux 6.18, ext4, a VM) one buffered
// pwrite of 8 MiB cost 8-10x the system time of the same bytes written 256 KiB at a time (2.6 s
// against 0.3 s for 1.3 GB, the buffer the same; bench/README.md, bench/dequantize).
constexpr std::size_t kMaxWriteBytes = 256u << 10;

std::string shape_json(std::span<const std::uint64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ","));
}

// Reference order: larger layout rank first, then name in byte order (std::string compares bytes
// as unsigned, which for UTF-8 is code point order, as Python sorts its str keys).
std::vector<std::size_t> data_order(std::span<const OutputTensorRef> tensors) {
  std::vector<std::size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const unsigned rank_a = dtype_layout_rank(tensors[a].dtype);
    const unsigned rank_b = dtype_layout_rank(tensors[b].dtype);
    if (rank_a != rank_b) return rank_a > rank_b;
    return tensors[a].name < tensors[b].name;
  });
  return order;
}

void check_names(std::span<const OutputTensorRef> tensors) {
  std::vector<std::string_view> names;
  names.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (t.name == kMetadataKey) throw Error(ErrorKind::input, "a tensor cannot be named __metadata__");
    names.push_back(t.name);
  }
  std::sort(names.begin(), names.end());
  const auto duplicate = std::adjacent_find(names.begin(), names.end());
  if (duplicate != names.end()) {
    throw Error(ErrorKind::input, fmt::format("tensor {} is written twice to the same file", *duplicate));
  }
}

std::string metadata_json(const std::map<std::string, std::string>& metadata) {
  std::string out = "\"__metadata__\":{";
  bool first = true;
  for (const auto& [key, value] : metadata) {
    if (!first) out += ',';
    first = false;
    append_serde_json_string(out, key, "metadata key");
    out += ':';
    append_serde_json_string(out, value, "metadata value of " + key);
  }
  out += '}';
  return out;
}

}  // namespace

FileLayout layout_file(std::span<const OutputTensor> tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<OutputTensorRef> refs;
  refs.reserve(tensors.size());
  for (const OutputTensor& t : tensors) refs.push_back({t.name, t.dtype, t.shape});
  return layout_file_refs(refs, metadata);
}

FileLayout layout_file_refs(std::span<const OutputTensorRef> tensors,
                            const std::map<std::string, std::string>& metadata) {
  check_names(tensors);
  FileLayout layout;
  layout.order = data_order(tensors);
  std::vector<std::uint64_t> relative(tensors.size());
  layout.bytes.resize(tensors.size());

  std::uint64_t data_bytes = 0;
  std::string& json = layout.header;
  json = "{";
  if (!metadata.empty()) json += metadata_json(metadata);
  for (std::size_t index : layout.order) {
    const OutputTensorRef& t = tensors[index];
    const auto size = byte_size(t.dtype, t.shape);
    if (!size) {
      throw Error(ErrorKind::input,
                  fmt::format("tensor {}: shape {} of {} overflows 64 bits or does not end on a "
                              "byte boundary",
                              t.name, shape_json(t.shape), dtype_name(t.dtype)));
    }
    if (__builtin_add_overflow(data_bytes, *size, &data_bytes)) {
      throw Error(ErrorKind::input, fmt::format("tensor {}: the file's data passes 2^64 bytes", t.name));
    }
    relative[index] = data_bytes - *size;
    layout.bytes[index] = *size;
    if (json.size() > 1) json += ',';
    append_serde_json_string(json, t.name, "tensor name");
    json += fmt::format(":{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{},{}]}}", dtype_name(t.dtype),
                        shape_json(t.shape), relative[index], data_bytes);
  }
  json += '}';
  json.append((8 - json.size() % 8) % 8, ' ');
  // Readers refuse larger headers (the reference's limit), so the writer must not produce one.
  if (json.size() > kMaxHeaderBytes) {
    throw Error(ErrorKind::input, fmt::format("the header would be {} bytes, more than the {} readers accept",
                                              json.size(), kMaxHeaderBytes));
  }

  layout.data_start = 8 + json.size();
  if (__builtin_add_overflow(layout.data_start, data_bytes, &layout.file_size)) {
    throw Error(ErrorKind::input,
                fmt::format("the file would pass 2^64 bytes ({} bytes of data)", data_bytes));
  }
  layout.offset.resize(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) layout.offset[i] = layout.data_start + relative[i];
  return layout;
}

std::string temp_path_for(const std::string& final_path) {
  const auto slash = final_path.rfind('/');
  if (slash == std::string::npos) return "." + final_path + ".partial";
  return final_path.substr(0, slash + 1) + "." + final_path.substr(slash + 1) + ".partial";
}

// ---- OutputFile ----------------------------------------------------------------------------------

namespace {

std::string parent_folder(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void fsync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_os_error("cannot open folder", folder, errno);
  const int rc = ::fsync(fd);
  const int fsync_errno = errno;
  ::close(fd);
  // Some filesystems cannot sync a folder; the rename itself has happened, so that is not fatal.
  if (rc != 0 && fsync_errno != EINVAL && fsync_errno != EROFS)
    throw_os_error("cannot sync folder", folder, fsync_errno);
}

}  // namespace

OutputFile OutputFile::create(const std::string& final_path, const FileLayout& layout) {
  OutputFile file;
  file.final_path_ = final_path;
  file.temp_path_ = temp_path_for(final_path);
  // Registered before it exists, so no signal can arrive between creation and registration.
  register_temp_file(file.temp_path_);
  file.registered_ = true;
  file.fd_ =
      io::open_in_output_folder(file.temp_path_, O_WRONLY | O_CREAT | O_TRUNC, 0644, "the temporary file");
  file.size_ = layout.file_size;

  // Reserving the space up front turns a full disk into an error now, before hours of copying;
  // filesystems without fallocate fall back to a sparse file.
  if (layout.file_size > 0 && ::fallocate(file.fd_, 0, 0, static_cast<off_t>(layout.file_size)) != 0 &&
      errno != EOPNOTSUPP && errno != ENOSYS) {
    throw_os_error(fmt::format("cannot reserve {} bytes for", layout.file_size), file.temp_path_, errno);
  }
  if (::ftruncate(file.fd_, static_cast<off_t>(layout.file_size)) != 0) {
    throw_os_error(fmt::format("cannot size to {} bytes", layout.file_size), file.temp_path_, errno);
  }

  std::string prefix(8, '\0');
  const std::uint64_t header_size = layout.header.size();
  for (std::size_t i = 0; i < 8; ++i) prefix[i] = static_cast<char>(header_size >> (8 * i));
  // Apart: a header of 10,000s of tensors is MBs, not copied behind its prefix.
  file.write_at(0, std::as_bytes(std::span(prefix.data(), prefix.size())));
  file.write_at(prefix.size(), std::as_bytes(std::span(layout.header.data(), layout.header.size())));
  return file;
}

OutputFile::OutputFile(OutputFile&& other) noexcept { *this = std::move(other); }

OutputFile& OutputFile::operator=(OutputFile&& other) noexcept {
  if (this != &other) {
    discard();
    final_path_ = std::move(other.final_path_);
    temp_path_ = std::move(other.temp_path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = std::exchange(other.size_, 0);
    committed_ = std::exchange(other.committed_, false);
    registered_ = std::exchange(other.registered_, false);
    other.final_path_.clear();
    other.temp_path_.clear();
  }
  return *this;
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (registered_) {
    if (!committed_) ::unlink(temp_path_.c_str());
    unregister_temp_file(temp_path_);
    registered_ = false;
  }
}

void OutputFile::write_at(std::uint64_t offset, std::span<const std::byte> data) {
  if (fd_ < 0) throw Error(ErrorKind::io, fmt::format("write to {} after it was closed", temp_path_));
  std::uint64_t end = 0;
  if (__builtin_add_overflow(offset, data.size(), &end) || end > size_) {
    throw Error(ErrorKind::io, fmt::format("write of {} bytes at offset {} passes the end of {} ({} bytes)",
                                           data.size(), offset, temp_path_, size_));
  }
  while (!data.empty()) {
    const std::size_t chunk = std::min<std::size_t>(data.size(), kMaxWriteBytes);
    const ssize_t n = ::pwrite(fd_, data.data(), chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw_os_error(fmt::format("cannot write {} bytes at offset {} to", data.size(), offset), temp_path_,
                     errno);
    if (n == 0)
      throw_os_error(fmt::format("cannot write {} bytes at offset {} to", data.size(), offset), temp_path_,
                     EIO);
    data = data.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
}

namespace {

// sync_file_range on [offset, offset + length) of `fd`; false when the filesystem or the kernel
// cannot do it (the caller then skips what depended on it), an Error(io) naming `path` otherwise.
bool sync_range(int fd, const std::string& path, std::uint64_t offset, std::uint64_t length, unsigned flags) {
  if (length == 0) return true;  // a length of 0 would mean "to the end of the file"
  while (::sync_file_range(fd, static_cast<off_t>(offset), static_cast<off_t>(length), flags) != 0) {
    if (errno == EINTR) continue;
    if (errno == ENOSYS || errno == EINVAL || errno == ESPIPE || errno == EOPNOTSUPP) return false;
    throw_os_error(fmt::format("cannot write back {} bytes at offset {} of", length, offset), path, errno);
  }
  return true;
}

}  // namespace

void OutputFile::start_writeback(std::uint64_t offset, std::uint64_t length) {
  if (fd_ < 0) throw Error(ErrorKind::io, fmt::format("write-back of {} after it was closed", temp_path_));
  sync_range(fd_, temp_path_, offset, length, SYNC_FILE_RANGE_WRITE);
}

void OutputFile::drop_written(std::uint64_t offset, std::uint64_t length) {
  if (fd_ < 0) throw Error(ErrorKind::io, fmt::format("write-back of {} after it was closed", temp_path_));
  constexpr unsigned kWriteAndWait =
      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
  // Dirty pages are not dropped, so without the wait the advice would do nothing. Advice is only
  // advice: its failure changes no byte, so it is not an error.
  if (sync_range(fd_, temp_path_, offset, length, kWriteAndWait) && length != 0) {
    ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_DONTNEED);
  }
}

void OutputFile::commit() {
  if (committed_) return;
  if (fd_ < 0) throw Error(ErrorKind::io, fmt::format("commit of {} after it was closed", temp_path_));
  if (::fsync(fd_) != 0) throw_os_error("cannot sync", temp_path_, errno);
  const int fd = std::exchange(fd_, -1);
  // close() can report a delayed write error (NFS); the file must not be published then.
  if (::close(fd) != 0) throw_os_error("cannot close", temp_path_, errno);
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    throw_os_error(fmt::format("cannot rename {} to", temp_path_), final_path_, errno);
  }
  committed_ = true;
  unregister_temp_file(temp_path_);
  registered_ = false;
  fsync_folder(parent_folder(final_path_));
}

}  // namespace shardwise::st
