#include <shardwise/safetensors/checkpoint.hpp>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>

#include "safetensors/header_json.hpp"

namespace shardwise::st {

namespace {

namespace fs = std::filesystem;
using detail::quote_name;

constexpr std::string_view kIndexName = "model.safetensors.index.json";
constexpr std::uint64_t kMaxIndexBytes = 1'000'000'000;
constexpr int kMaxIndexDepth = 64;

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

std::string read_text(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw_os_error("cannot read", path.string(), ec.value());
  if (size > kMaxIndexBytes) {
    throw Error(ErrorKind::input, fmt::format("{}: {} bytes is too large for an index", path.string(), size));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) throw_os_error("cannot read", path.string(), errno);
  return text.str();
}

// The index's weight_map (tensor -> file name). Duplicate tensor names, nesting deeper than
// kMaxIndexDepth and file names that would leave the folder are refused.
std::map<std::string, std::string> read_index(const fs::path& path) {
  const std::string where = path.string();
  const auto refuse = [&](const std::string& message) {
    return Error(ErrorKind::input, where + ": " + message);
  };
  std::string top_key;
  std::set<std::string> mapped;
  const auto guard = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= kMaxIndexDepth) {
      throw refuse(fmt::format("JSON nested deeper than {} levels", kMaxIndexDepth));
    }
    if (event == E::key && depth == 1) top_key = parsed.get<std::string>();
    if (event == E::key && depth == 2 && top_key == "weight_map" &&
        !mapped.insert(parsed.get<std::string>()).second) {
      throw refuse(fmt::format("weight_map names tensor {} twice", quote_name(parsed.get<std::string>())));
    }
    return true;
  };
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_text(path), guard);
  } catch (const nlohmann::json::exception& e) {
    throw refuse(fmt::format("not valid JSON: {}", e.what()));
  }
  if (!index.is_object()) throw refuse("is not a JSON object");
  const auto map = index.find("weight_map");
  if (map == index.end()) throw refuse("has no weight_map");
  if (!map->is_object()) throw refuse("weight_map is not an object");
  std::map<std::string, std::string> weight_map;
  for (const auto& [tensor, file] : map->items()) {
    if (!file.is_string())
      throw refuse(fmt::format("weight_map: tensor {} maps to a non-string", quote_name(tensor)));
    const auto name = file.get<std::string>();
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
      throw refuse(fmt::format("weight_map: tensor {} maps to {}, which is not a file name in the folder",
                               quote_name(tensor), quote_name(name)));
    }
    weight_map.emplace(tensor, name);
  }
  return weight_map;
}

// Opens each named file of `folder`; malformed files are collected in `diag`, not thrown, so one
// run reports every broken file. Returns the files that opened. The files are parsed on two
// threads (parsing headers is most of the time of planning); outcomes are then taken in name
// order, so messages and the first non-input error are the same as a serial run's.
std::vector<File> open_files(const fs::path& folder, const std::vector<std::string>& names,
                             Diagnostics& diag) {
  std::vector<std::optional<File>> opened(names.size());
  std::vector<std::exception_ptr> failed(names.size());
  const auto open_every = [&](std::size_t first) {
    for (std::size_t i = first; i < names.size(); i += 2) {
      try {
        opened[i].emplace(File::open((folder / names[i]).string()));
      } catch (...) {
        failed[i] = std::current_exception();
      }
    }
  };
  if (names.size() > 1) {
    std::thread other(open_every, std::size_t{1});
    open_every(0);
    other.join();
  } else {
    open_every(0);
  }
  std::vector<File> files;
  files.reserve(names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (opened[i]) {
      files.push_back(std::move(*opened[i]));
      continue;
    }
    try {
      std::rethrow_exception(failed[i]);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::input) throw;
      diag.add(e.what());
    }
  }
  return files;
}

std::string base_name(const File& file) { return fs::path(file.path()).filename().string(); }

// A tensor in two files is an error naming both.
void check_unique(const std::vector<File>& files, Diagnostics& diag) {
  std::unordered_map<std::string_view, const File*> owner;
  for (const auto& file : files) owner.reserve(owner.size() + file.header().tensors.size());
  for (const auto& file : files) {
    for (const auto& t : file.header().tensors) {
      auto [it, fresh] = owner.emplace(t.name, &file);
      if (!fresh) {
        diag.add(fmt::format("tensor {} is in both {} and {}", quote_name(t.name),
                             quote_name(base_name(*it->second)), quote_name(base_name(file))));
      }
    }
  }
}

// The index and the files must agree exactly: every file it names exists, every tensor it maps
// is in that file, every tensor of those files is mapped, and no other *.safetensors is present.
std::vector<File> open_indexed(const fs::path& folder, const fs::path& index_path, Diagnostics& diag) {
  const auto weight_map = read_index(index_path);
  std::map<std::string, std::vector<std::string>> by_file;  // file -> tensors mapped to it
  for (const auto& [tensor, file] : weight_map) by_file[file].push_back(tensor);
  const auto present_list = list_safetensors(folder);
  const std::set<std::string> present(present_list.begin(), present_list.end());

  std::vector<std::string> named;
  for (const auto& [file, tensors] : by_file) {
    std::error_code ec;
    if (present.count(file) != 0 || fs::exists(folder / file, ec)) {
      named.push_back(file);
    } else {
      diag.add(fmt::format("file {} is named by the index ({} tensors, e.g. {}) but is missing",
                           quote_name(file), tensors.size(), quote_name(tensors.front())));
    }
  }
  for (const auto& file : present_list) {
    if (by_file.count(file) == 0)
      diag.add(fmt::format("file {} is in the folder but not in the index", quote_name(file)));
  }
  std::vector<File> files = open_files(folder, named, diag);

  std::vector<std::string> file_names;  // base names of `files`, computed once
  for (const auto& file : files) file_names.push_back(base_name(file));
  std::unordered_map<std::string_view, const std::string*> found;  // tensor -> the file that holds it
  found.reserve(weight_map.size());
  for (std::size_t f = 0; f < files.size(); ++f) {
    for (const auto& t : files[f].header().tensors) {
      found.emplace(t.name, &file_names[f]);
      if (weight_map.count(t.name) == 0) {
        diag.add(fmt::format("tensor {} in {} is not in the index", quote_name(t.name),
                             quote_name(file_names[f])));
      }
    }
  }
  const std::set<std::string> opened(file_names.begin(), file_names.end());
  for (const auto& [tensor, file] : weight_map) {
    if (opened.count(file) == 0) continue;  // already reported: missing or malformed
    auto it = found.find(tensor);
    if (it == found.end() || *it->second != file) {
      const std::string elsewhere =
          it == found.end() ? "" : fmt::format(" (it is in {})", quote_name(*it->second));
      diag.add(fmt::format("the index maps tensor {} to {}, which does not hold it{}", quote_name(tensor),
                           quote_name(file), elsewhere));
    }
  }
  return files;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
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
      checkpoint.files_ = open_indexed(folder, index, diag);
      check_unique(checkpoint.files_, diag);
      diag.check(fmt::format("{} does not agree with the files in {}", index.string(), path));
      if (checkpoint.files_.empty()) {
        throw Error(ErrorKind::input, fmt::format("{}: the index names no files", index.string()));
      }
    } else {
      const auto names = list_safetensors(folder);
      if (names.empty()) {
        throw Error(ErrorKind::input, fmt::format("{}: no *.safetensors files in this folder", path));
      }
      checkpoint.files_ = open_files(folder, names, diag);
      check_unique(checkpoint.files_, diag);
      diag.check(fmt::format("{}: the checkpoint cannot be read", path));
    }
  }
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
