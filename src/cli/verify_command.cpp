// `shardwise verify`: re-plan from the input's headers and check the output folder against the
// plan (or, with --manifest-only, against its manifest alone). Prints every mismatch on stdout,
// then a summary; exits 6 (ErrorKind::verify) when there is any.
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/core/printable.hpp>
#include <shardwise/output/manifest.hpp>
#include <shardwise/verify/verifier.hpp>

#include "cli/commands.hpp"
#include "cli/common_options.hpp"
#include "cli/page_cache_option.hpp"

namespace shardwise::cli {

namespace {

struct VerifyArgs {
  PlanningOptions planning;
  std::string output;
  unsigned threads = 0;
  bool quiet = false;
  bool manifest_only = false;
  output::PageCache page_cache = output::PageCache::automatic;
};

// Hugging Face's layout depends on options of the conversion (--max-shard-size, --mirror): when
// none is given, those the folder's manifest records. A manifest that cannot be read is reported by
// the verification itself.
// Without --rules, the rules the manifest records (their text) and its parameters: those of the
// conversion, which detection might not choose again.
PlanningOptions planning_with_manifest(const VerifyArgs& args) {
  PlanningOptions planning = args.planning;
  try {
    // Its fields, not its tensors' entries (100,000s in a full-size model).
    const std::optional<output::Manifest> manifest =
        output::read_manifest(args.output, {[](std::size_t, const std::string&, output::ManifestTensor&&) {}});
    if (!manifest) return planning;
    if (manifest->output_layout == "hf" && !planning.max_shard_size && !planning.mirror)
      planning.recorded_max_shard_size = manifest->max_shard_size;
    if (!planning.rules_file && !manifest->rules.text.empty()) {
      planning.recorded_rules = PlanningOptions::RecordedRules{
          manifest->rules.name, manifest->rules.text,
          (std::filesystem::path(args.output) / output::kManifestFileName).string(),
          output::param_texts(*manifest, manifest->choice_words)};
    }
  } catch (const Error&) {
  }
  return planning;
}

int run_verify(const CLI::App& command, const VerifyArgs& args) {
  verify::VerifyOptions options;
  options.output_dir = args.output;
  options.threads = args.threads;
  options.page_cache = args.page_cache;
  options.progress = args.quiet ? output::ProgressMode::quiet : output::ProgressMode::automatic;
  verify::VerifyReport report;
  if (args.manifest_only) {
    report = verify::verify_manifest(options);
  } else {
    const Planned planned = plan_from_options(command, planning_with_manifest(args),
                                              args.quiet ? RulesNotice::quiet : RulesNotice::print);
    report = verify::verify_plan(planned.plan, planned.rules, options);
  }
  for (const verify::Finding& finding : report.findings) fmt::print("{}\n", printable(finding.str()));
  std::fflush(stdout);
  for (const std::string& note : report.notes)
    fmt::print(stderr, "shardwise: note: {}\n", printable_lines(note));
  if (!report.ok()) throw Error(ErrorKind::verify, verify::format_summary(report));
  if (!args.quiet) fmt::print("{}\n", verify::format_summary(report));
  return 0;
}

}  // namespace

void add_verify_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* command = app.add_subcommand(
      "verify",
      "Check a conversion's output: every file and tensor present, as planned, bytes equal to the source");
  add_planning_options(*command, args->planning);
  // Not needed with --manifest-only: required by hand below otherwise (--model-parallel when
  // planning, unless the rules mirror the input).
  command->get_option("--hf-ckpt-path")->required(false);
  command->add_option("-o,--save-path,--output-bf16-hf-path", args->output, "the output folder to verify")
      ->required();
  command->footer(
      command->get_footer() +
      "\nWithout --rules, verify plans with the rules the output's shardwise-manifest.json records "
      "(as the conversion read them), and takes from it every rules parameter and --model-parallel "
      "not given; the bundled rules the checkpoint fits only when there is no such manifest.");
  command->add_flag("--manifest-only", args->manifest_only,
                    "check the output against its shardwise-manifest.json alone, without reading the input");
  command->add_option("-t,--threads", args->threads, "reading threads (default: one per hardware thread)")
      ->check(CLI::Range(1u, 1024u));
  command->add_flag("-q,--quiet", args->quiet, "no progress, and no summary when everything verifies");
  add_page_cache_option(*command, args->page_cache,
                        "auto, keep or drop: drop what was read from the page cache once read for the last "
                        "time (auto: drop when input and output together exceed half of memory)");
  command->callback([&action, command, args] {
    if (!args->manifest_only) {
      if (command->get_option("--hf-ckpt-path")->count() == 0) throw CLI::RequiredError("--hf-ckpt-path");
    }
    action = [command, args] { return run_verify(*command, *args); };
  });
}

}  // namespace shardwise::cli
