#include "reshard/fused_parts.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <shardwise/core/io.hpp>
#include <shardwise/output/checksum.hpp>

#include "reshard/piece_check.hpp"

namespace shardwise::reshard {

std::vector<FusedPart> fused_parts(const output::ManifestTensor& tensor, std::size_t file, int fd,
                                   const std::string& path, std::uint64_t offset, std::uint64_t bytes,
                                   std::span<std::byte> buffer, Diagnostics& problems) {
  const output::CompositeCut& c = *tensor.cut->composite;
  if (c.dim != 0) {
    problems.add(fmt::format(
        "{}: {} is a fused output whose parts are concatenated along dim {}: their rows interleave, and "
        "convert --reverse splits fused outputs along dim 0 only",
        path, tensor.name, c.dim));
    return {};
  }
  std::vector<FusedPart> parts;
  std::uint64_t at = 0;
  for (const auto& [name, cut] : c.parts) {
    const auto part_bytes = st::byte_size(cut.dtype, cut.shape);
    if (!part_bytes || *part_bytes > bytes - std::min(at, bytes)) {
      problems.add(fmt::format("{}: {}: its parts, as the manifest lists them, are larger than its {} bytes",
                               path, tensor.name, bytes));
      return {};
    }
    const std::uint64_t begin = cut.placement.kind == plan::Placement::Kind::split ? cut.begin : 0;
    const std::uint64_t end = cut.placement.kind == plan::Placement::Kind::split ? cut.end : 0;
    parts.push_back({name, &cut, 0, Piece{file, offset + at, begin, end, *part_bytes, std::nullopt}});
    at += *part_bytes;
  }
  if (at != bytes) {
    problems.add(fmt::format("{}: {}: its parts, as the manifest lists them, make {} of its {} bytes", path,
                             tensor.name, at, bytes));
    return {};
  }
  // The whole hashed against its record and each part on its own, in one read.
  output::Hasher whole;
  for (FusedPart& part : parts) {
    output::Hasher hasher;
    for (std::uint64_t done = 0; done < part.piece.bytes;) {
      const auto n =
          static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), part.piece.bytes - done));
      const auto chunk = buffer.first(n);
      io::pread_exact(fd, path, part.piece.offset + done, chunk);
      whole.update(chunk);
      hasher.update(chunk);
      done += n;
    }
    part.xxh3 = hasher.digest();
  }
  if (whole.digest() != tensor.xxh3) {
    problems.add(damage_message(path, tensor.name, false, whole.digest(), tensor.xxh3));
    return {};
  }
  return parts;
}

}  // namespace shardwise::reshard
