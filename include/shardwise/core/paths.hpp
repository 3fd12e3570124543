#pragma once
// What keeps every read and write inside the folders a run is given: file names taken from
// untrusted text (a manifest, an index, a rules file) must name a file directly in its folder, and
// a file of an input folder must not be a link that leads out of it.

#include <optional>
#include <string>
#include <string_view>

namespace shardwise {

// Why `name` cannot name a file directly inside a folder, or "" when it can: it is empty, "." or
// "..", holds a '/' (a path, not a name), or a NUL byte (the OS would read it only up to there).
std::string file_name_problem(std::string_view name);
inline bool is_single_file_name(std::string_view name) { return file_name_problem(name).empty(); }

// Whether a file of an input folder may be a link to a file outside it (--allow-outside-links).
enum class OutsideLinks { refuse, allow };

// Where the file `name` of `folder` leads once every link is followed, when that is outside
// `folder`; nullopt when it stays inside, when it is missing (opening it reports that), or when it
// is a Hugging Face cache's blob: `folder` is `.../snapshots/REV` and the file is in `.../blobs/`
// beside `snapshots/` (the cache links each snapshot's files to its blobs). With `fd` >= 0, the
// file open on `fd` is the one checked (what was opened, whatever the path names by now).
std::optional<std::string> outside_target(const std::string& folder, const std::string& name, int fd = -1);

// Throws Error(input) naming the file and where it leads when outside_target() finds a target and
// `links` refuses it.
void check_inside_folder(const std::string& folder, const std::string& name, OutsideLinks links, int fd = -1);

}  // namespace shardwise
