#include <set>
#include <string_view>

#include <fmt/format.h>

#include <shardwise/verify/verifier.hpp>

namespace shardwise::verify {

namespace {

// "1 file", "2 files", "2 mismatches".
std::string plural(std::size_t n, std::string_view word) {
  const char* suffix = n == 1 ? "" : (word.back() == 'h' ? "es" : "s");
  return fmt::format("{} {}{}", n, word, suffix);
}

}  // namespace

std::string format_summary(const VerifyReport& r) {
  const std::string checked = fmt::format("{} ({}) and {}", plural(r.files, "file"),
                                          plural(r.tensors, "tensor"), plural(r.side_files, "side file"));
  if (!r.ok()) {
    std::set<std::string> files;
    for (const Finding& f : r.findings) files.insert(f.file);
    return fmt::format("verification failed: {} in {} ({} checked)", plural(r.findings.size(), "mismatch"),
                       plural(files.size(), "file"), checked);
  }
  const double gb = static_cast<double>(r.bytes_read) / 1e9;
  return fmt::format("verified {}{}: {:.2f} GB read in {:.1f} s ({:.2f} GB/s, {})", checked,
                     r.manifest_checked ? ", manifest consistent" : "", gb, r.seconds,
                     r.seconds > 0 ? gb / r.seconds : 0.0, plural(r.threads, "thread"));
}

}  // namespace shardwise::verify
