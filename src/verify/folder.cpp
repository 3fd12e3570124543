#include "verify/folder.hpp"

#include <filesystem>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/safetensors/writer.hpp>

namespace shardwise::verify {

namespace fs = std::filesystem;

std::set<std::string> list_folder(const std::string& folder) {
  std::set<std::string> names;
  std::error_code ec;
  const fs::file_status status = fs::status(folder, ec);
  if (status.type() == fs::file_type::not_found) return names;
  if (ec)
    throw Error(ErrorKind::io, fmt::format("cannot read the output folder {}: {}", folder, ec.message()));
  if (!fs::is_directory(status))
    throw Error(ErrorKind::io, fmt::format("the output path {} is not a folder", folder));
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    names.insert(it->path().filename().string());
  }
  if (ec)
    throw Error(ErrorKind::io, fmt::format("cannot list the output folder {}: {}", folder, ec.message()));
  return names;
}

void report_leftover_temporaries(const std::set<std::string>& present, const std::vector<std::string>& names,
                                 Findings& findings) {
  for (const std::string& name : names) {
    const std::string temp = st::temp_path_for(name);
    if (present.count(temp) != 0) {
      findings.add(
          temp, fmt::format("temporary of {} left by an interrupted conversion (remove it, or convert again)",
                            name));
    }
  }
}

std::string message_without_path(const std::string& message, const std::string& path) {
  const std::string prefix = path + ": ";
  return message.compare(0, prefix.size(), prefix) == 0 ? message.substr(prefix.size()) : message;
}

}  // namespace shardwise::verify
