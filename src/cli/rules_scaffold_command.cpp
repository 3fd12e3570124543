// `shardwise rules scaffold CHECKPOINT`: print a draft rules file made from the checkpoint's headers,
// then check that the draft loads and plans the checkpoint (a draft that does not is an error).
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include <shardwise/core/error.hpp>
#include <shardwise/plan/planner.hpp>
#include <shardwise/rules/bundled.hpp>
#include <shardwise/safetensors/checkpoint.hpp>
#include <shardwise/scaffold/scaffold.hpp>

#include "cli/commands.hpp"

namespace shardwise::cli {

namespace {

namespace fs = std::filesystem;

struct ScaffoldArgs {
  std::string checkpoint;
  std::optional<std::uint64_t> model_parallel;
  std::string name;
};

bool plain_file_name(const std::string& name) {
  return !name.empty() && name[0] != '.' && std::none_of(name.begin(), name.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7F || c == '/';
  });
}

// The checkpoint folder's other files (tokenizer, configuration, ...), in name order.
std::vector<std::string> side_files(const std::string& path) {
  std::vector<std::string> files;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return files;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    const bool tensors = name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json");
    if (!tensors && plain_file_name(name) && entry.is_regular_file(ec)) files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string default_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  const std::string name = fs::is_directory(p) ? p.filename().string() : p.stem().string();
  return plain_file_name(name) ? name : std::string("draft");
}

// The draft must load and plan its checkpoint with its defaults (mp = 1) and, when asked, at the
// mp its splits were guessed for.
void check_draft(const st::Checkpoint& checkpoint, const std::string& draft, const ScaffoldArgs& args) {
  const std::string what = fmt::format("the draft printed for {} ", args.checkpoint);
  try {
    const rules::Rules rules = rules::Rules::load_text(draft, "<draft>");
    plan::plan_checkpoint(checkpoint, rules, {1, {}});
    if (args.model_parallel) plan::plan_checkpoint(checkpoint, rules, {*args.model_parallel, {}});
  } catch (const Error& e) {
    throw Error(e.kind(), what + "does not plan it yet; edit it (docs/rules.md): " + e.what());
  }
}

// The suffixes of a packed triple, from the first bundled rules file that describes one: the C++
// knows the packing's shape, the rules know what its members are called.
scaffold::PackedSuffixes packed_suffixes() {
  for (const rules::BundledRules& bundled : rules::bundled_rules()) {
    const rules::Rules rules = rules::load_named_rules(std::string(bundled.name));
    for (const rules::Layout& layout : rules.layouts()) {
      if (auto suffixes = scaffold::packed_suffixes_of(layout)) return *suffixes;
    }
  }
  throw Error(ErrorKind::rules,
              "no bundled rules file describes a packed (GPTQ) layout to recognise triples by");
}

int run_scaffold(const ScaffoldArgs& args) {
  const st::Checkpoint checkpoint = st::Checkpoint::open(args.checkpoint);
  std::vector<scaffold::TensorHeader> headers;
  headers.reserve(checkpoint.tensors().size());
  for (const st::TensorRef& ref : checkpoint.tensors()) {
    headers.push_back(scaffold::TensorHeader{ref.info->name, ref.info->dtype, ref.info->shape});
  }
  scaffold::ScaffoldOptions options;
  options.packed = packed_suffixes();
  options.name = args.name.empty() ? default_name(args.checkpoint) : args.name;
  options.source = args.checkpoint;
  options.model_parallel = args.model_parallel.value_or(8);
  options.side_files = side_files(args.checkpoint);
  const std::string draft = scaffold::scaffold_rules(headers, options);
  if (std::fwrite(draft.data(), 1, draft.size(), stdout) != draft.size() || std::fflush(stdout) != 0) {
    throw_os_error("cannot write the draft to", "standard output", errno);
  }
  check_draft(checkpoint, draft, args);
  return 0;
}

}  // namespace

void add_rules_scaffold_command(CLI::App& rules, Action& action) {
  auto args = std::make_shared<ScaffoldArgs>();
  auto* scaffold = rules.add_subcommand(
      "scaffold",
      "Print a draft rules file for a checkpoint, from its headers alone: "
      "name patterns grouped into keys, packed\n"
      "groups (GPTQ, AWQ) recognised with the factors their shapes give, "
      "FP8 block scales noted, indexed scopes\n"
      "inside layers (an MoE's routed modules) turned into ownership with the count found, "
      "and one table row per key with a split\n"
      "guessed from the shapes (each guess commented). The draft is then "
      "loaded and planned with its defaults\n"
      "(mp=1; also at --model-parallel when given): if it does not plan, "
      "the exit code says so (4). Redirect it\n"
      "to a file, read the guesses, edit, and plan.");
  scaffold->add_option("CHECKPOINT", args->checkpoint, "a .safetensors file or a folder of them")->required();
  scaffold
      ->add_option(
          "-m,--model-parallel", args->model_parallel,
          "the number of ranks the splits are guessed for (default 8); when given, the draft is also "
          "planned at it")
      ->check(CLI::Range(std::uint64_t{1}, plan::kMaxModelParallel));
  scaffold->add_option("--name", args->name,
                       "the draft's `name:` (default: the checkpoint's folder or file name)");
  scaffold->callback([&action, args] { action = [args] { return run_scaffold(*args); }; });
}

}  // namespace shardwise::cli
