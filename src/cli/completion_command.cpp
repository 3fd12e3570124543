// `shardwise completion bash|zsh` and the hidden `shardwise man-page`: shell completion and the man
// page, generated from the CLI definition itself (the CLI11 app: its commands, their options, the
// choices of each option), so that they cannot drift from it. The build runs both to install them
// (cmake/Install.cmake).

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <shardwise/rules/bundled.hpp>

#include "cli/commands.hpp"

namespace shardwise::cli {
namespace {

struct OptionSpec {
  std::vector<std::string> names;  // -i, --hf-ckpt-path, ...
  bool takes_value = false;
  std::vector<std::string> choices;  // the values an IsMember check accepts; empty: any (a file)
  std::string help;                  // the first line of its description
};

struct CommandSpec {
  std::string path;  // "shardwise/rules/check": the words that reach it, joined by '/'
  std::string help;
  std::vector<std::string> subcommands;
  std::map<std::string, std::string> subcommand_help;
  std::vector<OptionSpec> options;
  bool positionals = false;
  std::vector<std::string> positional_choices;  // of a positional with an IsMember check
};

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// CLI11 appends each check's description to the type name: IsMember's is "{a,b,c}".
std::vector<std::string> choices_of(const CLI::Option& option) {
  const std::string type = option.get_type_name();
  const auto open = type.find('{');
  const auto close = type.find('}', open);
  if (open == std::string::npos || close == std::string::npos) return {};
  std::vector<std::string> choices;
  std::string rest = type.substr(open + 1, close - open - 1);
  for (std::size_t start = 0; start <= rest.size();) {
    const auto comma = std::min(rest.find(',', start), rest.size());
    if (comma > start) choices.push_back(rest.substr(start, comma - start));
    start = comma + 1;
  }
  return choices;
}

// A value naming rules (-r/--rules, `rules show NAME`) may be a bundled name: those are offered too.
bool names_rules(const CLI::Option& option) {
  const auto& long_names = option.get_lnames();
  return std::find(long_names.begin(), long_names.end(), "rules") != long_names.end();
}

void collect(const CLI::App& app, const std::string& path, std::vector<CommandSpec>& out) {
  CommandSpec spec{path, first_line(app.get_description()), {}, {}, {}, false, {}};
  for (const CLI::Option* option : app.get_options()) {
    if (!option->nonpositional()) {
      spec.positionals = true;
      const auto choices = choices_of(*option);
      spec.positional_choices.insert(spec.positional_choices.end(), choices.begin(), choices.end());
      continue;
    }
    OptionSpec o;
    for (const auto& s : option->get_snames()) o.names.push_back("-" + s);
    for (const auto& l : option->get_lnames()) o.names.push_back("--" + l);
    o.takes_value = option->get_type_size_max() != 0;
    o.choices = choices_of(*option);
    if (o.takes_value && o.choices.empty() && names_rules(*option)) {
      for (const auto& bundled : rules::bundled_rules()) o.choices.push_back(bundled.name);
      o.choices.push_back("(file)");  // a marker: files are offered as well
    }
    o.help = first_line(option->get_description());
    spec.options.push_back(std::move(o));
  }
  const auto subcommands = app.get_subcommands([](const CLI::App* sub) { return !sub->get_group().empty(); });
  for (const CLI::App* sub : subcommands) {
    spec.subcommands.push_back(sub->get_name());
    spec.subcommand_help[sub->get_name()] = first_line(sub->get_description());
  }
  out.push_back(spec);
  for (const CLI::App* sub : subcommands) collect(*sub, path + "/" + sub->get_name(), out);
}

std::vector<CommandSpec> commands_of(const CLI::App& app) {
  std::vector<CommandSpec> commands;
  collect(app, "shardwise", commands);
  return commands;
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// `word` inside single quotes, for either shell.
std::string quoted(const std::string& word) {
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool offers_files(const OptionSpec& option) {
  return option.choices.empty() || option.choices.back() == "(file)";
}

std::vector<std::string> real_choices(const OptionSpec& option) {
  std::vector<std::string> choices = option.choices;
  if (!choices.empty() && choices.back() == "(file)") choices.pop_back();
  return choices;
}

// The shell function's prologue shared by both shells: walk the words typed so far to the deepest
// command they name (`cmd`), then the tables of that command.
std::string command_walk(const std::vector<CommandSpec>& commands, const char* word) {
  std::string paths;
  for (const auto& c : commands)
    if (c.path != "shardwise") paths += (paths.empty() ? "" : "|") + c.path;
  return fmt::format(
      "  local cmd=shardwise i\n"
      "  for ((i = {0}; i < {1}; i++)); do\n"
      "    case \"$cmd/{2}\" in\n"
      "      ({3}) cmd=\"$cmd/{2}\" ;;\n"
      "    esac\n"
      "  done\n",
      word[0] == 'C' ? 1 : 2, word, word[0] == 'C' ? "${COMP_WORDS[i]}" : "${words[i]}", paths);
}

std::string bash_script(const std::vector<CommandSpec>& commands) {
  std::string tables, values;
  for (const auto& c : commands) {
    std::vector<std::string> options, valued, file_valued;
    for (const auto& o : c.options) {
      options.insert(options.end(), o.names.begin(), o.names.end());
      if (!o.takes_value) continue;
      valued.insert(valued.end(), o.names.begin(), o.names.end());
      std::string patterns;
      for (const auto& n : o.names) patterns += (patterns.empty() ? "\"" : "|\"") + c.path + " " + n + "\"";
      if (o.choices.empty()) continue;
      values += fmt::format("    {}) words={}{} ;;\n", patterns, quoted(joined(real_choices(o))),
                            offers_files(o) ? "; files=1" : "; files=");
    }
    tables += fmt::format("    {}) subs={}; opts={}; valued={}; positionals={}; pchoices={} ;;\n", c.path,
                          quoted(joined(c.subcommands)), quoted(joined(options)), quoted(joined(valued)),
                          c.positionals ? "1" : "", quoted(joined(c.positional_choices)));
  }
  return "# bash completion for shardwise: generated by `shardwise completion bash` from its CLI "
         "definition.\n"
         "_shardwise() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n" +
         command_walk(commands, "COMP_CWORD") +
         "  local subs='' opts='' valued='' positionals='' pchoices='' words='' files=1\n"
         "  case \"$cmd\" in\n" +
         tables +
         "  esac\n"
         "  COMPREPLY=()\n"
         "  if [[ \" $valued \" == *\" $prev \"* ]]; then\n"
         "    case \"$cmd $prev\" in\n" +
         values +
         "    esac\n"
         "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
         "    if [[ -n $files ]]; then compopt -o filenames; COMPREPLY+=($(compgen -f -- \"$cur\")); fi\n"
         "    return 0\n"
         "  fi\n"
         "  if [[ $cur == -* ]]; then\n"
         "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
         "  elif [[ -n $subs ]]; then\n"
         "    COMPREPLY=($(compgen -W \"$subs\" -- \"$cur\"))\n"
         "  elif [[ -n $pchoices ]]; then\n"
         "    COMPREPLY=($(compgen -W \"$pchoices\" -- \"$cur\"))\n"
         "  elif [[ -n $positionals ]]; then\n"
         "    compopt -o filenames; COMPREPLY=($(compgen -f -- \"$cur\"))\n"
         "  else\n"
         "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
         "  fi\n"
         "}\n"
         "complete -F _shardwise shardwise\n";
}

// "NAME:description" for zsh's _describe, the colons of the name escaped.
std::string described(const std::string& name, const std::string& help) {
  std::string escaped;
  for (char c : name) escaped += c == ':' ? std::string("\\:") : std::string(1, c);
  return quoted(escaped + ":" + help);
}

std::string zsh_script(const std::vector<CommandSpec>& commands) {
  std::string tables, values;
  for (const auto& c : commands) {
    std::string subs, options, valued;
    for (const auto& s : c.subcommands) subs += " " + described(s, c.subcommand_help.at(s));
    for (const auto& o : c.options) {
      for (const auto& n : o.names) options += " " + described(n, o.help);
      if (!o.takes_value) continue;
      for (const auto& n : o.names) valued += " " + n;
      if (o.choices.empty()) continue;
      std::string patterns;
      for (const auto& n : o.names) patterns += (patterns.empty() ? "\"" : "|\"") + c.path + " " + n + "\"";
      std::string words;
      for (const auto& w : real_choices(o)) words += " " + quoted(w);
      values +=
          fmt::format("    ({}) choices=({}){} ;;\n", patterns, words, offers_files(o) ? "" : "; files=");
    }
    std::string pchoices;
    for (const auto& w : c.positional_choices) pchoices += " " + quoted(w);
    tables += fmt::format("    ({}) subs=({}); opts=({}); valued=\"{} \"; positionals={}; pchoices=({}) ;;\n",
                          c.path, subs, options, valued, c.positionals ? "1" : "", pchoices);
  }
  return "#compdef shardwise\n"
         "# zsh completion for shardwise: generated by `shardwise completion zsh` from its CLI definition.\n"
         "_shardwise() {\n"
         "  local cur=${words[CURRENT]} prev=${words[CURRENT-1]}\n" +
         command_walk(commands, "CURRENT") +
         "  local -a subs opts choices pchoices\n"
         "  local valued='' positionals='' files=1\n"
         "  case \"$cmd\" in\n" +
         tables +
         "  esac\n"
         "  if [[ \"$valued\" == *\" $prev \"* ]]; then\n"
         "    case \"$cmd $prev\" in\n" +
         values +
         "    esac\n"
         "    (( ${#choices} )) && compadd -a choices\n"
         "    [[ -n $files ]] && _files\n"
         "    return 0\n"
         "  fi\n"
         "  if [[ $cur == -* ]]; then\n"
         "    _describe -t options option opts\n"
         "  elif (( ${#subs} )); then\n"
         "    _describe -t commands command subs\n"
         "  elif (( ${#pchoices} )); then\n"
         "    compadd -a pchoices\n"
         "  elif [[ -n $positionals ]]; then\n"
         "    _files\n"
         "  else\n"
         "    _describe -t options option opts\n"
         "  fi\n"
         "}\n"
         "if [[ $funcstack[1] == _shardwise ]]; then _shardwise \"$@\"; else compdef _shardwise shardwise; "
         "fi\n";
}

// Text for roff: a backslash doubled as \e, '-' as \- (an ASCII minus: options copy and paste), and
// a line starting with a control character escaped.
std::string roff(const std::string& text) {
  std::string out;
  bool line_start = true;
  for (char c : text) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    out += c == '\\' ? std::string("\\e") : c == '-' ? std::string("\\-") : std::string(1, c);
    line_start = c == '\n';
  }
  return out;
}

std::string man_page(const CLI::App& app, const std::string& version) {
  std::string page = fmt::format(
      ".TH SHARDWISE 1 \"\" \"{}\" \"User Commands\"\n"
      ".\\\" Generated by `shardwise man-page` from the commands' own help: do not edit.\n"
      ".SH NAME\nshardwise \\- convert large\\-model checkpoints between layouts, driven by declarative "
      "rules\n"
      ".SH SYNOPSIS\n.B shardwise\n\\fICOMMAND\\fR [\\fIOPTIONS\\fR]\n.br\n.B shardwise\n\\-\\-help | "
      "\\-\\-version\n"
      ".SH DESCRIPTION\n{}\n.PP\nEach command's help follows, as `shardwise COMMAND \\-\\-help` prints it.\n"
      ".SH COMMANDS\n",
      roff(version.substr(0, version.find('\n'))), roff(app.get_description()));
  std::vector<std::pair<std::string, const CLI::App*>> pending;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); }))
    pending.emplace_back("shardwise", sub);
  for (std::size_t i = 0; i < pending.size(); ++i) {
    const auto [parent, sub] = pending[i];
    const std::string name = parent + " " + sub->get_name();
    page += fmt::format(".SS {}\n.nf\n{}.fi\n", roff(name), roff(sub->help(parent)));
    std::size_t at = i + 1;
    for (const CLI::App* child :
         sub->get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); }))
      pending.insert(pending.begin() + static_cast<std::ptrdiff_t>(at++), {name, child});
  }
  page += ".SH EXIT STATUS\n" + roff(app.get_footer().substr(0, app.get_footer().find('\n'))) + "\n";
  page +=
      ".SH FILES\n.TP\n.I /usr/share/shardwise/rules/\nThe sources of the bundled rules (built into the "
      "executable: `shardwise rules show NAME` prints them) and examples/.\n.TP\n"
      ".I /usr/share/doc/shardwise/\nThe documentation (README.md and the docs/ pages).\n";
  page += ".SH SEE ALSO\nThe rules language: /usr/share/doc/shardwise/rules.md. Installing: install.md.\n";
  return page;
}

}  // namespace

void add_completion_commands(CLI::App& app, Action& action) {
  auto shell = std::make_shared<std::string>();
  auto* completion = app.add_subcommand(
      "completion", "Print shell completion for bash or zsh (source it, or install it: docs/install.md)");
  completion->add_option("SHELL", *shell, "bash or zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  completion->callback([&app, &action, shell] {
    action = [&app, shell] {
      const auto commands = commands_of(app);
      fmt::print("{}", *shell == "bash" ? bash_script(commands) : zsh_script(commands));
      return 0;
    };
  });
  // Hidden (no group): the build writes shardwise.1 with it.
  auto* man = app.add_subcommand("man-page", "Print the man page (roff) generated from every command's help");
  man->group("");
  man->callback([&app, &action] {
    action = [&app] {
      fmt::print("{}", man_page(app, version_text()));
      return 0;
    };
  });
}

}  // namespace shardwise::cli
