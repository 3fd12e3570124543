#include "output/side_file.hpp"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <span>
#include <vector>

#include <fmt/format.h>

#include <shardwise/core/cleanup.hpp>
#include <shardwise/core/error.hpp>
#include <shardwise/core/paths.hpp>
#include <shardwise/output/checksum.hpp>

#include <shardwise/core/io.hpp>
#include "output/atomic_file.hpp"

namespace shardwise::output {

ManifestSideFile copy_side_file(const std::string& from_dir, const std::string& name,
                                const std::string& out_dir, OutsideLinks links, const InputWatch& inputs,
                                Progress& progress, std::optional<std::uint64_t> expected) {
  io::ReadOnlyFile in((std::filesystem::path(from_dir) / name).string());
  check_inside_folder(from_dir, name, links, in.fd());
  AtomicFile out((std::filesystem::path(out_dir) / name).string());
  out.narrow_mode(in.mode());
  progress.set_current(name);
  std::vector<std::byte> buffer(1u << 20);
  Hasher hasher;
  const std::uint64_t size = in.size();
  for (std::uint64_t done = 0; done < size;) {
    if (interrupted()) throw Error(ErrorKind::interrupted, "interrupted");
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - done));
    io::pread_exact(in.fd(), in.path(), done, std::span(buffer).first(n));
    hasher.update(std::span(buffer).first(n));
    out.write(std::span(buffer).first(n));
    progress.add(n);
    done += n;
  }
  if (expected && *expected != hasher.digest()) {
    throw Error(ErrorKind::input, fmt::format("{}: xxh3 {}, the manifest says {}", in.path(),
                                              xxh3_hex(hasher.digest()), xxh3_hex(*expected)));
  }
  inputs.check();
  out.commit();
  return {name, hasher.digest(), true};
}

ManifestSideFile write_generated_file(const plan::GeneratedFile& file, const std::string& out_dir,
                                      const InputWatch& inputs, Progress& progress) {
  AtomicFile out((std::filesystem::path(out_dir) / file.file).string());
  progress.set_current(file.file);
  const auto bytes = std::as_bytes(std::span(file.content));
  out.write(bytes);
  progress.add(bytes.size());
  inputs.check();
  out.commit();
  return {file.file, xxh3(bytes), true};
}

}  // namespace shardwise::output
