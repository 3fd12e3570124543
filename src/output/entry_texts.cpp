#include "output/entry_texts.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <span>
#include <vector>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/io.hpp>

namespace shardwise::output {

namespace {

constexpr std::size_t kChunkBytes = 1 << 20;

// A file without a name in `folder`: O_TMPFILE, or where the file system has none, a file created
// under a name unique to this process and unlinked at once.
int open_unnamed(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  const std::string path =
      (std::filesystem::path(folder) / fmt::format(".shardwise-entries.{}.partial", ::getpid())).string();
  const int named = io::open_in_output_folder(path, O_RDWR | O_CREAT | O_EXCL, 0600, "a temporary file");
  if (::unlink(path.c_str()) != 0) {
    const int error = errno;
    ::close(named);
    throw_os_error("cannot remove", path, error);
  }
  return named;
}

}  // namespace

EntryTexts::EntryTexts(const std::string& folder) : folder_(folder), fd_(open_unnamed(folder)) {}

EntryTexts::~EntryTexts() {
  if (fd_ >= 0) ::close(fd_);
}

EntryTexts::Span EntryTexts::add(const ManifestOutput& entry, const TensorLines* tensors) {
  const Span span{end_, 0};
  std::string buffer;
  const auto flush = [&] {
    io::pwrite_all(fd_, folder_, end_, std::as_bytes(std::span(buffer)));
    end_ += buffer.size();
    buffer.clear();
  };
  const auto sink = [&](std::string_view part) {
    buffer += part;
    if (buffer.size() >= kChunkBytes) flush();
  };
  if (tensors != nullptr)
    format_output_entry(entry, *tensors, sink);
  else
    format_output_entry(entry, true, sink);
  flush();
  return {span.offset, end_ - span.offset};
}

EntryTexts::Span EntryTexts::add(const ManifestOutput& entry, const EntryTexts& from, Span lines) {
  const Span span{end_, 0};
  append(format_entry_opening(entry));
  std::vector<std::byte> buffer(static_cast<std::size_t>(std::min<std::uint64_t>(lines.length, kChunkBytes)));
  for (std::uint64_t done = 0; done < lines.length;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), lines.length - done));
    io::pread_exact(from.fd_, from.folder_, lines.offset + done, std::span(buffer).first(n));
    io::pwrite_all(fd_, folder_, end_, std::span(buffer).first(n));
    end_ += n;
    done += n;
  }
  append(kEntryClosing);
  return {span.offset, end_ - span.offset};
}

void EntryTexts::append(std::string_view text) {
  io::pwrite_all(fd_, folder_, end_, std::as_bytes(std::span(text)));
  end_ += text.size();
}

void EntryTexts::copy_to(Span span, AtomicFile& file) const {
  file.append_copy(fd_, folder_, span.offset, span.length);
}

}  // namespace shardwise::output
