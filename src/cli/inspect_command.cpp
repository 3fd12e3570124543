// `shardwise inspect PATH [--format text|json]`: every tensor of a safetensors file or checkpoint
// folder, from the headers alone, then totals.
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/safetensors/inspect.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"

namespace shardwise::cli {

namespace {

struct InspectOptions {
  std::string path;
  std::string format = "text";
  bool allow_outside_links = false;
};

int run_inspect(const InspectOptions& options) {
  const auto checkpoint = st::Checkpoint::open(options.path, outside_links(options.allow_outside_links));
  const auto format = options.format == "json" ? st::InspectFormat::json : st::InspectFormat::text;
  const std::string report = st::inspect_report(checkpoint, format);
  std::fwrite(report.data(), 1, report.size(), stdout);
  return 0;
}

}  // namespace

void add_inspect_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<InspectOptions>();
  auto* inspect = app.add_subcommand("inspect",
                                     "List every tensor of a safetensors file or checkpoint folder (dtype, "
                                     "shape, bytes, file), then totals");
  inspect->footer(
      "Reads headers only and validates them fully: a malformed file, or an index\n"
      "(model.safetensors.index.json) that disagrees with the files, is an error (exit 4)\n"
      "naming the file and the tensor. Without an index, every *.safetensors in PATH is read.");
  inspect->add_option("PATH", options->path, "A .safetensors file, or a folder of them")->required();
  inspect
      ->add_option("--format", options->format,
                   "text: an aligned table; json: one object with a `tensors` list")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  add_outside_links_option(*inspect, options->allow_outside_links);
  inspect->callback([&action, options] { action = [options] { return run_inspect(*options); }; });
}

}  // namespace shardwise::cli
