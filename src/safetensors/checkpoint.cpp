#include <shardwise/safetensors/checkpoint.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/memory.hpp>

#include "safetensors/header_json.hpp"
#include "safetensors/index.hpp"
#include "safetensors/name_order.hpp"

namespace shardwise::st {

namespace {

namespace fs = std::filesystem;
using detail::quote_name;

constexpr std::string_view kIndexName = "model.safetensors.index.json";

// Every `*.safetensors` regular file (or link to one) in `folder`, in byte order. Names starting
// with a dot are skipped, as a shell glob would (editors' and writers' temporary files).
std::vector<std::string> list_safetensors(const fs::path& folder) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= 12 || name.front() == '.' || !name.ends_with(".safetensors")) continue;
    std::error_code type_ec;
    if (it->is_regular_file(type_ec)) names.push_back(name);
  }
  if (ec) throw_os_error("cannot list", folder.string(), ec.value());
  std::sort(names.begin(), names.end());
  return names;
}

// What opening each of a list of files gave: the file, or what it threw.
struct Opened {
  std::vector<std::optional<File>> files;
  std::vector<std::exception_ptr> failed;
};

void open_one(const fs::path& folder, const std::string& name, OutsideLinks links, Opened& out,
              std::size_t i) {
  try {
    File file = File::open((folder / name).string());
    check_inside_folder(folder.string(), name, links, file.fd());
    out.files[i].emplace(std::move(file));
  } catch (...) {
    out.failed[i] = std::current_exception();
  }
}

// Opens each named file of `folder` on two threads (parsing headers is most of the time of
// planning), each taking the next file not yet taken; this thread first runs `meanwhile` (which
// may throw: nothing more is then opened).
Opened open_each(const fs::path& folder, const std::vector<std::string>& names, OutsideLinks links,
                 const std::function<void()>& meanwhile = {}) {
  Opened out{std::vector<std::optional<File>>(names.size()), std::vector<std::exception_ptr>(names.size())};
  std::atomic<std::size_t> next{0};
  const auto open_rest = [&] {
    for (std::size_t i = next++; i < names.size(); i = next++) open_one(folder, names[i], links, out, i);
  };
  if (names.size() < 2 && !meanwhile) {
    open_rest();
    return out;
  }
  std::thread other(open_rest);
  try {
    if (meanwhile) meanwhile();
  } catch (...) {
    next = names.size();
    other.join();
    throw;
  }
  open_rest();
  other.join();
  return out;
}

// The files that opened, in name order; malformed files, and files that lead outside the folder, are
// collected in `diag`, not thrown, so one run reports every broken file. Taken in name order, the
// messages and the first non-input error are the same as a serial run's.
std::vector<File> keep_opened(Opened& opened, Diagnostics& diag) {
  std::vector<File> files;
  files.reserve(opened.files.size());
  for (std::size_t i = 0; i < opened.files.size(); ++i) {
    if (opened.files[i]) {
      files.push_back(std::move(*opened.files[i]));
      continue;
    }
    try {
      std::rethrow_exception(opened.failed[i]);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::input) throw;
      diag.add(e.what());
    }
  }
  return files;
}

std::vector<File> open_files(const fs::path& folder, const std::vector<std::string>& names,
                             OutsideLinks links, Diagnostics& diag) {
  Opened opened = open_each(folder, names, links);
  return keep_opened(opened, diag);
}

// The outcomes for `named` (sorted) out of those for `present` (sorted), opening here any named file
// that was not present (not a regular file: its error says so) or not opened.
Opened take_named(const fs::path& folder, const std::vector<std::string>& named,
                  const std::vector<std::string>& present, Opened& opened, OutsideLinks links) {
  Opened out{std::vector<std::optional<File>>(named.size()), std::vector<std::exception_ptr>(named.size())};
  for (std::size_t i = 0; i < named.size(); ++i) {
    const auto it = std::lower_bound(present.begin(), present.end(), named[i]);
    if (it == present.end() || *it != named[i]) {
      open_one(folder, named[i], links, out, i);
      continue;
    }
    const auto at = static_cast<std::size_t>(it - present.begin());
    if (at >= opened.files.size() || (!opened.files[at] && !opened.failed[at])) {
      open_one(folder, named[i], links, out, i);
      continue;
    }
    out.files[i] = std::move(opened.files[at]);
    out.failed[i] = opened.failed[at];
  }
  return out;
}

std::string base_name(const File& file) { return fs::path(file.path()).filename().string(); }

std::vector<std::string> base_names(const std::vector<File>& files) {
  std::vector<std::string> names;
  names.reserve(files.size());
  for (const auto& file : files) names.push_back(base_name(file));
  return names;
}

// A tensor of an opened file: its name, the file (index into the files) and its place there.
struct Located {
  std::string_view name;
  std::uint32_t file = 0;
  std::uint32_t at = 0;
};

// Every tensor of `files`, sorted by name, equal names in file order. Each file's list is sorted
// already, so this is a merge of the files' lists.
HugeVector<Located> by_name(const std::vector<File>& files) {
  HugeVector<Located> all;
  std::size_t total = 0;
  for (const auto& file : files) total += file.header().tensors.size();
  all.reserve(total);
  for (std::size_t f = 0; f < files.size(); ++f) {
    const auto& tensors = files[f].header().tensors;
    for (std::size_t i = 0; i < tensors.size(); ++i)
      all.push_back({tensors[i].name, static_cast<std::uint32_t>(f), static_cast<std::uint32_t>(i)});
  }
  detail::sort_runs(all, [](const Located& a, const Located& b) { return a.name < b.name; });
  return all;
}

// Messages found in name order but reported, as before, file by file in each file's name order.
struct Finding {
  std::uint32_t file = 0;
  std::uint32_t at = 0;
  std::string message;
};

void report_in_file_order(std::vector<Finding>& findings, Diagnostics& diag) {
  std::sort(findings.begin(), findings.end(), [](const Finding& a, const Finding& b) {
    return std::tie(a.file, a.at) < std::tie(b.file, b.at);
  });
  for (auto& finding : findings) diag.add(std::move(finding.message));
}

// A tensor in two files is an error naming both (the first file holding it, then the other).
void check_unique(const std::vector<std::string>& file_names, const HugeVector<Located>& all,
                  Diagnostics& diag) {
  std::vector<Finding> repeats;
  for (std::size_t i = 0, j = 0; i < all.size(); i = j) {
    for (j = i + 1; j < all.size() && all[j].name == all[i].name; ++j) {
      repeats.push_back(
          {all[j].file, all[j].at,
           fmt::format("tensor {} is in both {} and {}", quote_name(all[i].name),
                       quote_name(file_names[all[i].file]), quote_name(file_names[all[j].file]))});
    }
  }
  report_in_file_order(repeats, diag);
}

// The files the index names that can be opened: every file it names must exist, and every
// `*.safetensors` in the folder must be named.
std::vector<std::string> files_named(const detail::WeightMap& map, const fs::path& folder,
                                     const std::vector<std::string>& present, Diagnostics& diag) {
  std::vector<std::size_t> count(map.files.size(), 0);
  std::vector<const detail::WeightMap::Entry*> example(map.files.size(), nullptr);  // its first tensor
  for (const auto& e : map.tensors) {
    if (count[e.file]++ == 0) example[e.file] = &e;
  }
  std::vector<std::string> named;  // `present` is sorted, as map.files is
  for (std::size_t f = 0; f < map.files.size(); ++f) {
    const std::string& file = map.files[f];
    std::error_code ec;
    if (std::binary_search(present.begin(), present.end(), file) || fs::exists(folder / file, ec)) {
      named.push_back(file);
    } else {
      diag.add(fmt::format("file {} is named by the index ({} tensors, e.g. {}) but is missing",
                           quote_name(file), count[f], quote_name(map.name(*example[f]))));
    }
  }
  for (const auto& file : present) {
    if (!std::binary_search(map.files.begin(), map.files.end(), file))
      diag.add(fmt::format("file {} is in the folder but not in the index", quote_name(file)));
  }
  return named;
}

// The index and the opened files must agree: every tensor of the files is mapped, and every
// tensor mapped to an opened file is in that file. One walk over both name-sorted lists.
void check_index(const detail::WeightMap& map, const std::vector<std::string>& file_names,
                 const HugeVector<Located>& all, Diagnostics& diag) {
  constexpr std::uint32_t kNotOpened = UINT32_MAX;
  std::vector<std::uint32_t> opened(map.files.size(), kNotOpened);  // index file -> opened file
  for (std::size_t f = 0; f < file_names.size(); ++f) {
    const auto it = std::lower_bound(map.files.begin(), map.files.end(), file_names[f]);
    if (it != map.files.end() && *it == file_names[f])
      opened[static_cast<std::size_t>(it - map.files.begin())] = static_cast<std::uint32_t>(f);
  }
  std::vector<Finding> unmapped;   // tensors of the files that the index lacks
  std::vector<std::string> wrong;  // tensors the index maps to an opened file that lacks them
  const auto not_in_index = [&](const Located& t) {
    unmapped.push_back({t.file, t.at,
                        fmt::format("tensor {} in {} is not in the index", quote_name(t.name),
                                    quote_name(file_names[t.file]))});
  };
  std::size_t i = 0;
  for (const auto& e : map.tensors) {
    const std::string_view name = map.name(e);
    for (; i < all.size() && all[i].name < name; ++i) not_in_index(all[i]);
    const Located* held = i < all.size() && all[i].name == name ? &all[i] : nullptr;  // first file holding it
    while (i < all.size() && all[i].name == name) ++i;
    if (opened[e.file] == kNotOpened) continue;  // already reported: missing or malformed
    if (held == nullptr || held->file != opened[e.file]) {
      const std::string elsewhere =
          held == nullptr ? "" : fmt::format(" (it is in {})", quote_name(file_names[held->file]));
      wrong.push_back(fmt::format("the index maps tensor {} to {}, which does not hold it{}",
                                  quote_name(name), quote_name(map.files[e.file]), elsewhere));
    }
  }
  for (; i < all.size(); ++i) not_in_index(all[i]);
  report_in_file_order(unmapped, diag);
  for (auto& message : wrong) diag.add(std::move(message));
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path, OutsideLinks links) {
  // Each file's header is parsed into lists of MBs freed when the file is done: the next file's
  // reuse their pages instead of fresh ones the kernel zeroes. None stays kept after opening.
  const KeepFreedHuge keep_freed;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec) throw_os_error("cannot open", path, ec.value());
  Checkpoint checkpoint;
  if (!fs::is_directory(status)) {
    checkpoint.files_.push_back(File::open(path));
    const auto parent = fs::path(path).parent_path();
    checkpoint.root_ = parent.empty() ? "." : parent.string();
  } else {
    checkpoint.root_ = path;
    const fs::path folder(path);
    const fs::path index = folder / kIndexName;
    Diagnostics diag(ErrorKind::input);
    if (fs::exists(index, ec)) {
      check_inside_folder(path, std::string(kIndexName), links);
      // The index and the files must agree exactly: every problem is listed.
      // Read while the folder's files open (the files it names are usually all of them).
      std::vector<std::string> present;
      bool listed = true;
      try {
        present = list_safetensors(folder);
      } catch (const Error&) {
        listed = false;  // listed again after the index, so that a bad index is still reported first
      }
      detail::WeightMap map;
      Opened opened = open_each(folder, present, links, [&] { map = detail::read_index(index); });
      if (!listed) present = list_safetensors(folder);
      const auto named = files_named(map, folder, present, diag);
      Opened taken = take_named(folder, named, present, opened, links);
      opened = Opened();  // the files the index does not name are closed
      checkpoint.files_ = keep_opened(taken, diag);
      const auto file_names = base_names(checkpoint.files_);
      const auto all = by_name(checkpoint.files_);
      check_index(map, file_names, all, diag);
      check_unique(file_names, all, diag);
      diag.check(fmt::format("{} does not agree with the files in {}", index.string(), path));
      if (checkpoint.files_.empty()) {
        throw Error(ErrorKind::input, fmt::format("{}: the index names no files", index.string()));
      }
    } else {
      const auto names = list_safetensors(folder);
      if (names.empty()) {
        throw Error(ErrorKind::input, fmt::format("{}: no *.safetensors files in this folder", path));
      }
      checkpoint.files_ = open_files(folder, names, links, diag);
      // Names are unique within a file (its header's reader refuses a name twice): one file needs
      // no merge of 100,000s of names.
      if (checkpoint.files_.size() > 1)
        check_unique(base_names(checkpoint.files_), by_name(checkpoint.files_), diag);
      diag.check(fmt::format("{}: the checkpoint cannot be read", path));
    }
  }
  std::size_t total = 0;
  for (const auto& file : checkpoint.files_) total += file.header().tensors.size();
  checkpoint.tensors_.reserve(total);
  for (std::size_t i = 0; i < checkpoint.files_.size(); ++i) {
    for (const auto& t : checkpoint.files_[i].header().tensors)
      checkpoint.tensors_.push_back(TensorRef{i, &t});
  }
  return checkpoint;
}

std::uint64_t Checkpoint::total_bytes() const noexcept {
  std::uint64_t total = 0;
  for (const auto& ref : tensors_) total += ref.info->bytes();
  return total;
}

std::string Checkpoint::file_name(std::size_t file) const { return base_name(files_.at(file)); }

}  // namespace shardwise::st
