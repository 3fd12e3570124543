#include "output/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <vector>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/writer.hpp>

#include <shardwise/core/io.hpp>

namespace shardwise::output {

AtomicFile::AtomicFile(std::string final_path) : AtomicFile(final_path, st::temp_path_for(final_path)) {}

AtomicFile::AtomicFile(std::string final_path, std::string temp_path)
    : final_path_(std::move(final_path)), temp_path_(std::move(temp_path)) {
  register_temp_file(temp_path_);
  try {
    fd_ = io::open_in_output_folder(temp_path_, O_WRONLY | O_CREAT | O_TRUNC, 0644, "the temporary file");
  } catch (...) {
    unregister_temp_file(temp_path_);
    throw;
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    ::unlink(temp_path_.c_str());
    unregister_temp_file(temp_path_);
  }
}

void AtomicFile::narrow_mode(unsigned source_mode) {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw_os_error("cannot stat", temp_path_, errno);
  const auto mode = static_cast<mode_t>(st.st_mode & source_mode & 0777u);
  if (mode != (st.st_mode & 0777u) && ::fchmod(fd_, mode) != 0)
    throw_os_error("cannot change the mode of", temp_path_, errno);
}

void AtomicFile::write(std::span<const std::byte> data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_os_error("cannot write", temp_path_, errno);
    }
    done += static_cast<std::size_t>(n);
  }
}

void AtomicFile::append_copy(int fd, const std::string& source, std::uint64_t offset, std::uint64_t length) {
  while (length > 0) {
    auto in = static_cast<loff_t>(offset);
    const ssize_t n = ::copy_file_range(fd, &in, fd_, nullptr, static_cast<std::size_t>(length), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0 && errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        throw_os_error("cannot write", temp_path_, errno);
      break;  // no copy between these files (or nothing copied): through a buffer
    }
    offset += static_cast<std::uint64_t>(n);
    length -= static_cast<std::uint64_t>(n);
  }
  std::vector<std::byte> buffer(static_cast<std::size_t>(std::min<std::uint64_t>(length, 1 << 20)));
  while (length > 0) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length));
    io::pread_exact(fd, source, offset, std::span(buffer).first(n));
    write(std::span(buffer).first(n));
    offset += n;
    length -= n;
  }
}

void AtomicFile::commit() {
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw_os_error("cannot write", temp_path_, errno);
  if (std::rename(temp_path_.c_str(), final_path_.c_str()) != 0)
    throw_os_error("cannot rename to", final_path_, errno);
  committed_ = true;
  unregister_temp_file(temp_path_);
}

void write_file_atomically(const std::string& final_path, const std::string& bytes) {
  AtomicFile file(final_path);
  file.write(std::as_bytes(std::span(bytes)));
  file.commit();
}

}  // namespace shardwise::output
