// Resuming: files an earlier run of the same plan finished are kept (and not touched), damaged or
// missing ones are written again, and a changed plan refuses to resume, saying what changed.
#include <shardwise/convert/converter.hpp>

#include <sys/stat.h>

#include <map>
#include <utility>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <shardwise/core/error.hpp>
#include <shardwise/output/checksum.hpp>
#include <shardwise/output/manifest.hpp>

#include "output/four_ranks.hpp"
#include "support/support.hpp"

namespace shardwise::test {
namespace {

namespace fs = std::filesystem;

std::map<std::string, std::string> folder_files(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files[e.path().filename().string()] = read_file(e.path());
  return files;
}

// Inode and modification time: a file renamed into place again gets a new inode.
struct Identity {
  ino_t inode = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const Identity&) const = default;
};

Identity identity_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return {st.st_ino, std::int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

convert::ConvertSummary resume(const FourRanks& s, const std::string& out) {
  convert::ConvertOptions options = s.options(out);
  options.run.resume = output::Resume::keep_finished;
  return convert::convert_plan(s.plan, options);
}

// What `kill -9` after two files leaves: the manifest incomplete, with checksums for ranks 0 and 2
// only, and the other files missing or half-written under their temporary names.
void make_killed_run(const FourRanks& s, const std::string& out) {
  s.convert(out);
  const fs::path dir = s.dir / out;
  output::Manifest manifest = *output::read_manifest(dir.string());
  manifest.complete = false;
  for (output::ManifestOutput& o : manifest.outputs) o.finished = o.rank == 0 || o.rank == 2;
  for (output::ManifestSideFile& side : manifest.side_files) side.finished = false;
  output::write_manifest(dir.string(), manifest);
  fs::remove(dir / "model1-mp4.safetensors");
  fs::rename(dir / "model3-mp4.safetensors", dir / ".model3-mp4.safetensors.partial");
  fs::remove(dir / "notes.txt");
}

TEST_CASE("resume keeps the files a killed run finished, untouched, and writes the rest") {
  FourRanks s;
  s.convert("fresh");
  make_killed_run(s, "out");
  const Identity zero = identity_of(s.dir / "out" / "model0-mp4.safetensors");
  const Identity two = identity_of(s.dir / "out" / "model2-mp4.safetensors");
  const auto summary = resume(s, "out");
  CHECK(summary.kept == 2);
  CHECK(summary.files == 2);
  CHECK(summary.side_files == 1);
  CHECK(summary.manifest_complete);
  CHECK(output::format_summary(summary).find("; kept 2 files an earlier run finished") != std::string::npos);
  CHECK(identity_of(s.dir / "out" / "model0-mp4.safetensors") == zero);
  CHECK(identity_of(s.dir / "out" / "model2-mp4.safetensors") == two);
  CHECK(folder_files(s.dir / "out") == folder_files(s.dir / "fresh"));
}

TEST_CASE("resume after a complete run writes nothing but the side files and the manifest") {
  FourRanks s;
  s.convert("out");
  const auto before = folder_files(s.dir / "out");
  const auto summary = resume(s, "out");
  CHECK(summary.kept == 4);
  CHECK(summary.files == 0);
  CHECK(folder_files(s.dir / "out") == before);
}

TEST_CASE("resume writes again a finished file that was damaged, truncated, replaced or lost since") {
  struct Damage {
    std::string what;
    void (*apply)(const fs::path& file);
  };
  const std::vector<Damage> damages = {
      {"a flipped byte",
       [](const fs::path& f) {
         std::string bytes = read_file(f);
         bytes[bytes.size() - 5] = static_cast<char>(bytes[bytes.size() - 5] ^ 0x10);
         write_file(f, bytes);
       }},
      {"truncated", [](const fs::path& f) { fs::resize_file(f, fs::file_size(f) - 1); }},
      {"grown", [](const fs::path& f) { write_file(f, read_file(f) + "x"); }},
      {"missing", [](const fs::path& f) { fs::remove(f); }},
  };
  for (const Damage& damage : damages) {
    CAPTURE(damage.what);
    FourRanks s;
    s.convert("fresh");
    make_killed_run(s, "out");
    damage.apply(s.dir / "out" / "model2-mp4.safetensors");
    const Identity zero = identity_of(s.dir / "out" / "model0-mp4.safetensors");
    const auto summary = resume(s, "out");
    CHECK(summary.kept == 1);
    CHECK(summary.files == 3);
    CHECK(identity_of(s.dir / "out" / "model0-mp4.safetensors") == zero);
    CHECK(folder_files(s.dir / "out") == folder_files(s.dir / "fresh"));
  }
}

TEST_CASE("resume refuses a changed plan and says each change") {
  struct Change {
    std::string what;
    void (*apply)(FourRanks& s, convert::ConvertOptions& options);
    std::string message;
  };
  const std::vector<Change> changes = {
      {"rules", [](FourRanks&, convert::ConvertOptions& o) { o.rules.xxh3 = 43; },
       "the rules changed (manifest: test-rules xxh3 000000000000002a, now: test-rules xxh3 "
       "000000000000002b)"},
      {"rules name", [](FourRanks&, convert::ConvertOptions& o) { o.rules.name = "other-rules"; },
       "the rules changed (manifest: test-rules xxh3 000000000000002a, now: other-rules xxh3 "
       "000000000000002a)"},
      {"parameter", [](FourRanks& s, convert::ConvertOptions&) { s.plan.params["n_experts"] = 16; },
       "the parameter n_experts changed: 8 -> 16"},
      {"parameters",
       [](FourRanks& s, convert::ConvertOptions&) {
         s.plan.params.erase("n_experts");
         s.plan.params["group_size"] = 64;
         s.plan.params["mp"] = 8;
       },
       "the parameter mp changed: 4 -> 8; the parameter n_experts is no longer set (manifest: 8); the "
       "parameter "
       "group_size is new: 64"},
      {"input",
       [](FourRanks& s, convert::ConvertOptions&) {
         // The same bytes under another name: the headers hash covers the file names too.
         const std::string renamed = (s.dir / "in" / "renamed.safetensors").string();
         fs::copy_file(s.plan.input_files[0], renamed);
         s.plan.input_files[0] = renamed;
       },
       ""},
  };
  for (const Change& change : changes) {
    CAPTURE(change.what);
    FourRanks s;
    s.convert("out");
    const auto before = folder_files(s.dir / "out");
    convert::ConvertOptions options = s.options("out");
    options.run.resume = output::Resume::keep_finished;
    change.apply(s, options);
    std::string message = change.message;
    if (message.empty()) {
      message = "the input changed (headers xxh3: manifest " +
                output::xxh3_hex(output::read_manifest((s.dir / "out").string())->input_headers_xxh3) +
                ", now " + output::xxh3_hex(output::input_headers_xxh3(s.plan)) + ")";
    }
    try {
      convert::convert_plan(s.plan, options);
      FAIL("resumed");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::io);
      CHECK(std::string(e.what()) == "cannot resume: " + message + " (since " +
                                         (fs::canonical(s.dir / "out") / "shardwise-manifest.json").string() +
                                         " was written; convert without --resume to start over)");
    }
    CHECK(folder_files(s.dir / "out") == before);  // refused before writing anything
  }
}

TEST_CASE(
    "resume into an empty folder converts everything, without --resume finished files are written again") {
  FourRanks s;
  const auto first = resume(s, "out");
  CHECK(first.kept == 0);
  CHECK(first.files == 4);
  const Identity zero = identity_of(s.dir / "out" / "model0-mp4.safetensors");
  const auto again = s.convert("out");
  CHECK(again.kept == 0);
  CHECK(again.files == 4);
  CHECK(!(identity_of(s.dir / "out" / "model0-mp4.safetensors") == zero));
}

TEST_CASE("resume uses the fragments of partial runs, and a partial resume keeps only its own ranks") {
  FourRanks s;
  s.convert("fresh");
  convert::ConvertOptions options = s.options("out");
  options.run.ranks = std::vector<std::uint64_t>{1, 2};
  convert::convert_plan(s.plan, options);  // leaves a fragment: the manifest is not complete
  const Identity one = identity_of(s.dir / "out" / "model1-mp4.safetensors");

  options.run.ranks = std::vector<std::uint64_t>{1, 3};
  options.run.resume = output::Resume::keep_finished;
  const auto partial = convert::convert_plan(s.plan, options);
  CHECK(partial.kept == 1);
  CHECK(partial.files == 1);
  CHECK(identity_of(s.dir / "out" / "model1-mp4.safetensors") == one);
  CHECK(partial.waiting_for == std::vector<std::uint64_t>{0});

  const auto whole = resume(s, "out");  // a whole run resumes from both fragments
  CHECK(whole.kept == 3);
  CHECK(whole.files == 1);
  CHECK(identity_of(s.dir / "out" / "model1-mp4.safetensors") == one);
  CHECK(folder_files(s.dir / "out") == folder_files(s.dir / "fresh"));
}

TEST_CASE("resume keeps a file only when its entry lists the planned tensors in order, whatever the text") {
  FourRanks s;
  s.convert("fresh");
  s.convert("out");
  const fs::path manifest = s.dir / "out" / "shardwise-manifest.json";
  auto json = nlohmann::ordered_json::parse(read_file(manifest));
  auto& outputs = json["outputs"];
  REQUIRE(outputs.size() == 4);
  for (std::size_t rank = 1; rank < 4; ++rank) REQUIRE(outputs[rank]["tensors"].size() >= 2);
  outputs[1]["tensors"][1]["name"] = outputs[1]["tensors"][1]["name"].get<std::string>() + ".other";
  outputs[2]["tensors"].erase(outputs[2]["tensors"].size() - 1);
  std::swap(outputs[3]["tensors"][0], outputs[3]["tensors"][1]);
  write_file(manifest, json.dump(1));
  const Identity zero = identity_of(s.dir / "out" / "model0-mp4.safetensors");
  const auto summary = resume(s, "out");
  CHECK(summary.kept == 1);
  CHECK(summary.files == 3);
  CHECK(identity_of(s.dir / "out" / "model0-mp4.safetensors") == zero);
  CHECK(folder_files(s.dir / "out") == folder_files(s.dir / "fresh"));

  // Each entry's tensors before its other keys: the reader takes the whole text after all, and
  // every file fits again.
  json = nlohmann::ordered_json::parse(read_file(manifest));
  for (auto& entry : json["outputs"]) {
    nlohmann::ordered_json reordered = {{"tensors", entry["tensors"]}};
    for (const auto& [key, value] : entry.items()) {
      if (key != "tensors") reordered[key] = value;
    }
    entry = reordered;
  }
  write_file(manifest, json.dump(1));
  const Identity one = identity_of(s.dir / "out" / "model1-mp4.safetensors");
  const auto again = resume(s, "out");
  CHECK(again.kept == 4);
  CHECK(again.files == 0);
  CHECK(identity_of(s.dir / "out" / "model1-mp4.safetensors") == one);
  CHECK(folder_files(s.dir / "out") == folder_files(s.dir / "fresh"));
}

}  // namespace
}  // namespace shardwise::test
