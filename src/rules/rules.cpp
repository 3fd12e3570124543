// Loading a rules file (size and syntax guards, then the sections in order) and the small public
// accessors. Matching lives in decide.cpp.
#include <shardwise/rules/rules.hpp>

#include <cerrno>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/depthguard.h>

#include <shardwise/core/error.hpp>
#include <shardwise/rules/bundled.hpp>

#include "rules/loader.hpp"
#include "rules/rules_impl.hpp"
#include "rules/suggest.hpp"

namespace shardwise::rules {

namespace {

// Rules files are written by hand: a megabyte is generous, and it bounds what yaml-cpp (which
// recurses, and keeps every node) and the schema walk can be made to do by a hostile file.
constexpr std::size_t kMaxRulesBytes = std::size_t{1} << 20;

const std::vector<std::string> kTopLevelKeys = {"shardwise", "name", "description", "params", "output", "side_files",
                                               "unknown_keys", "normalize", "skip", "layouts", "keys", "table",
                                               "overrides", "ownership"};

void read_sections(detail::YamlReader& in, const YAML::Node& root, CompiledRules& out) {
  using Reader = void (*)(detail::YamlReader&, const YAML::Node&, CompiledRules&);
  // Params first: ownership rules refer to them.
  const std::pair<const char*, Reader> sections[] = {
      {"params", detail::read_params},   {"normalize", detail::read_normalize}, {"skip", detail::read_skips},
      {"layouts", detail::read_layouts}, {"keys", detail::read_keys},           {"table", detail::read_table},
      {"overrides", detail::read_overrides}, {"ownership", detail::read_ownership}};
  detail::read_header(in, root, out);
  for (const auto& [key, reader] : sections) {
    if (const YAML::Node node = detail::YamlReader::field(root, key); node.IsDefined() && !node.IsNull()) {
      reader(in, node, out);
    }
  }
}

YAML::Node parse_yaml(std::string_view yaml, detail::YamlReader& in) {
  try {
    return YAML::Load(std::string(yaml));
  } catch (const YAML::DeepRecursion& e) {
    in.error(in.where(e.mark), "YAML nested too deeply (yaml-cpp's limit is 2000 levels)");
  } catch (const YAML::ParserException& e) {
    in.error(in.where(e.mark), "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    in.error(in.where(e.mark), "cannot read YAML: " + e.msg);
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

}  // namespace

namespace detail {

void load_rules(std::string_view yaml, const std::string& display_name, CompiledRules& out) {
  if (yaml.size() > kMaxRulesBytes) {
    throw Error(ErrorKind::rules, fmt::format("{}: rules file is {} bytes; at most {} are accepted", display_name,
                                              yaml.size(), kMaxRulesBytes));
  }
  CompiledRules* impl = &out;
  impl->text = std::string(yaml);
  impl->display_name = display_name;
  YamlReader in(display_name);
  const YAML::Node root = parse_yaml(yaml, in);
  if (root.IsDefined()) {
    if (!root.IsMap()) {
      in.error(SourceLocation{display_name, 1, 1}, fmt::format("a rules file must be a map of sections, got {}", node_kind(root)));
    } else if (in.check_map(root, "the rules file", kTopLevelKeys)) {
      read_sections(in, root, *impl);
    }
  }
  Diagnostics problems(ErrorKind::rules);
  for (const auto& message : in.problems()) problems.add(message);
  problems.check("invalid rules file " + display_name);
  format_trails(*impl);
  for (auto* matcher : {&impl->skip_matcher, &impl->key_matcher, &impl->override_matcher, &impl->ownership_matcher}) {
    matcher->compile();  // false only means slower matching, see OrderedMatcher::compile
  }
}

}  // namespace detail

std::string SourceLocation::str() const {
  if (line <= 0) return file;
  return fmt::format("{}:{}:{}", file, line, column);
}

std::string_view split_name(Split split) {
  switch (split) {
    case Split::out: return "out";
    case Split::in: return "in";
    case Split::replicate: break;
  }
  return "replicate";
}

const LayoutMember* Layout::find(std::string_view suffix) const {
  for (const auto& member : members) {
    if (member.suffix == suffix) return &member;
  }
  return nullptr;
}

Rules::Rules(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Rules::Rules(Rules&&) noexcept = default;
Rules& Rules::operator=(Rules&&) noexcept = default;
Rules::~Rules() = default;

Rules Rules::load_text(std::string_view yaml, const std::string& display_name) {
  auto impl = std::make_unique<Impl>();
  detail::load_rules(yaml, display_name, *impl);
  return Rules(std::move(impl));
}

Rules Rules::load_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw_os_error("cannot open rules file", path, errno);
  // Read one byte past the limit, so an oversized file (or a pipe) is refused without reading it all.
  std::string text(kMaxRulesBytes + 1, '\0');
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (file.bad()) throw_os_error("cannot read rules file", path, errno);
  text.resize(static_cast<std::size_t>(file.gcount()));
  if (text.size() > kMaxRulesBytes) {
    throw Error(ErrorKind::rules, fmt::format("{}: rules file is larger than {} bytes", path, kMaxRulesBytes));
  }
  return load_text(text, path);
}

Rules Rules::bundled() {
  const auto& all = bundled_rules();
  if (all.empty()) throw Error(ErrorKind::rules, "no bundled rules in this build");
  return load_text(all.front().text, "<bundled>/" + all.front().file_name);
}

Params Rules::resolve_params(const Params& given) const {
  Params params{{"mp", 1}};
  std::vector<std::string> known{"mp"};
  for (const auto& spec : impl_->params) {
    known.push_back(spec.name);
    if (spec.default_value) params[spec.name] = *spec.default_value;
  }
  for (const auto& [name, value] : given) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      throw Error(ErrorKind::usage, fmt::format("unknown parameter '{}' for rules {}{} (known: {})", name,
                                                impl_->display_name, detail::did_you_mean(name, known),
                                                fmt::join(known, ", ")));
    }
    params[name] = value;
  }
  std::vector<std::string> missing;
  for (const auto& spec : impl_->params) {
    if (params.contains(spec.name) || spec.inferred) continue;
    missing.push_back(
        fmt::format("{} is required: {} (parameter {} of {} has no default; --param {}=N is the same)",
                    param_flag(spec.name), spec.help.empty() ? "a rules parameter" : spec.help, spec.name,
                    spec.where.str(), spec.name));
  }
  if (missing.size() == 1) throw Error(ErrorKind::usage, missing.front());
  if (!missing.empty()) throw Error(ErrorKind::usage, fmt::format("{}", fmt::join(missing, "\n")));
  if (params.at("mp") == 0) throw Error(ErrorKind::usage, "mp (the model-parallel size) must be at least 1");
  return params;
}

std::string param_flag(std::string_view param) {
  std::string flag = "--" + std::string(param);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

const std::string& Rules::name() const { return impl_->name; }
const std::string& Rules::display_name() const { return impl_->display_name; }
const std::string& Rules::text() const { return impl_->text; }
const std::vector<std::string>& Rules::side_files() const { return impl_->side_files; }
const std::vector<Layout>& Rules::layouts() const { return impl_->layouts; }
const std::vector<ParamInfo>& Rules::params() const { return impl_->params; }

std::string Rules::output_file(std::uint64_t rank, std::uint64_t mp) const {
  std::string name = impl_->output_file;
  for (const auto& [field, value] : {std::pair{std::string("{rank}"), rank}, std::pair{std::string("{mp}"), mp}}) {
    for (std::size_t pos = name.find(field); pos != std::string::npos; pos = name.find(field, pos)) {
      const std::string text = std::to_string(value);
      name.replace(pos, field.size(), text);
      pos += text.size();
    }
  }
  return name;
}

}  // namespace shardwise::rules
