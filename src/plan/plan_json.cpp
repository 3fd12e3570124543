// The plan for programs (docs/plan-json.md is the contract). Streamed as text, one tensor per line:
// building a DOM for 100,000s of tensors costs more than planning them. plan_to_json parses the
// same text, so the two can never disagree.

#include <algorithm>
#include <cstdint>
#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <shardwise/core/byte_words.hpp>
#include <shardwise/plan/planner.hpp>

#include <shardwise/plan/plan_view.hpp>

namespace shardwise::plan {
namespace {

using namespace std::string_view_literals;  // appends of literals without strlen

bool needs_escape(char c) { return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20; }

// Whether `s` has nothing to escape, eight bytes at a time.
bool plain(std::string_view s) noexcept {
  if (s.size() < 8) return std::none_of(s.begin(), s.end(), needs_escape);
  return byte_words::none_found(s, [](std::uint64_t word) {
    return byte_words::any_below(word, 0x20) | byte_words::any_equal(word, '"') |
           byte_words::any_equal(word, '\\');
  });
}

// Appends `s` as a JSON string. Names come from validated headers (UTF-8); only quotes,
// backslashes and control characters need escaping.
void append_string(std::string& out, std::string_view s) {
  out += '"';
  if (plain(s)) {
    out += s;
    out += '"';
    return;
  }
  std::size_t done = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!needs_escape(s[i])) continue;
    out.append(s.data() + done, i - done);
    if (s[i] == '"' || s[i] == '\\') {
      out += '\\';
      out += s[i];
    } else {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}",
                     static_cast<unsigned>(static_cast<unsigned char>(s[i])));
    }
    done = i + 1;
  }
  out.append(s.data() + done, s.size() - done);
  out += '"';
}

using detail::append_shape;
using detail::append_uint;

// A block-scaled transform's fields inside "cast": which, with which companion, its block.
void append_transform(std::string& out, const Plan& plan, const PlannedTensor& t,
                      const std::vector<std::string_view>& files) {
  out += ", \"transform\": \""sv;
  out += cast_name(t.cast);
  out += '"';
  if (t.companion == kNoCompanion || t.companion >= plan.companions.size()) return;
  const Companion& c = plan.companions[t.companion];
  const Source& scale = plan.sources[c.source];
  out += ", \"companion\": {\"file\": "sv;
  append_string(out, files[scale.file]);
  out += ", \"name\": "sv;
  append_string(out, scale.name);
  out += ", \"dtype\": \""sv;
  out += st::dtype_name(scale.dtype);
  out += "\", \"shape\": "sv;
  append_shape(out, scale.shape);
  if (c.slice.whole()) {
    out += ", \"slice\": null"sv;
  } else {
    out += fmt::format(", \"slice\": {{\"dim\": {}, \"begin\": {}, \"end\": {}}}", c.slice.dim, c.slice.begin,
                       c.slice.end);
  }
  if (t.cast == Cast::dequantize_packed) {
    // The members it consumes (none has a tensor entry of its own), the codes first.
    out += ", \"members\": ["sv;
    const std::vector<std::size_t> members = detail::packed_members(c, t.source);
    for (std::size_t m = 0; m < members.size(); ++m) {
      if (m != 0) out += ", ";
      append_string(out, plan.sources[members[m]].name);
    }
    out += fmt::format("], \"packing\": \"{}\", \"bits\": {}, \"group_size\": {}",
                       c.packing == Packing::awq    ? "awq"
                       : c.packing == Packing::gptq ? "gptq"
                                                    : "gptq_v2",
                       c.bits, c.group_size);
  } else if (c.block_rows == kWholeBlock || c.block_cols == kWholeBlock) {
    out += c.block_rows == kWholeBlock ? ", \"block\": \"per_tensor\"" : ", \"block\": \"per_channel\"";
  } else {
    out += fmt::format(", \"block\": [{}, {}]", c.block_rows, c.block_cols);
  }
  if (t.cast == Cast::dequantize) out += fmt::format(", \"nan\": \"0x{:04X}\"", c.nan_bits);
  out += ", \"rule\": "sv;
  append_string(out, plan.rule_labels[c.rule]);
  out += '}';
}

void append_tensor(std::string& out, const Plan& plan, const PlannedTensor& t, const Source& src,
                   const std::vector<std::string_view>& files, std::string_view rule) {
  const std::string_view source_file = files[src.file];
  out += "      {\"name\": "sv;
  append_string(out, t.name);
  out += ", \"dtype\": \""sv;
  out += st::dtype_name(t.dtype);
  out += "\", \"shape\": "sv;
  append_shape(out, t.shape);
  out += ", \"bytes\": "sv;
  append_uint(out, t.bytes);
  out += ", \"source\": {\"file\": "sv;
  append_string(out, source_file);
  out += ", \"name\": "sv;
  append_string(out, src.name);
  out += ", \"dtype\": \""sv;
  out += st::dtype_name(src.dtype);
  out += "\", \"shape\": "sv;
  append_shape(out, src.shape);
  if (t.slice.whole()) {
    out += ", \"slice\": null}"sv;
  } else {
    out += ", \"slice\": {\"dim\": "sv;
    append_uint(out, static_cast<std::uint64_t>(t.slice.dim));
    out += ", \"begin\": "sv;
    append_uint(out, t.slice.begin);
    out += ", \"end\": "sv;
    append_uint(out, t.slice.end);
    out += "}}"sv;
  }
  if (t.cast == Cast::none) {
    out += ", \"cast\": null"sv;
  } else {
    out += ", \"cast\": {\"from\": \""sv;
    out += detail::cast_source_dtype(src, t);
    out += "\", \"to\": \""sv;
    out += detail::cast_target_dtype(t);
    if (t.cast == Cast::reinterpret) {
      out += "\", \"reinterpret\": true}"sv;
    } else if (t.cast == Cast::f16_to_bf16 || t.cast == Cast::f32_to_bf16) {
      out += "\"}"sv;
    } else {
      out += '"';
      append_transform(out, plan, t, files);
      out += '}';
    }
  }
  if (t.placement.replicas > 1) {
    out += ", \"replicas\": "sv;
    append_uint(out, t.placement.replicas);
  }
  if (!src.within.whole()) {
    out += ", \"chunk\": {\"dim\": 0, \"begin\": "sv;
    append_uint(out, src.within.begin);
    out += ", \"end\": "sv;
    append_uint(out, src.within.end);
    out += '}';
  }
  if (t.permutation != kNoPermutation && t.permutation < plan.permutations.size()) {
    // Only in tensors that have one, so that other plans keep their bytes.
    const RowPermutation& p = plan.permutations[t.permutation];
    out += fmt::format(
        ", \"permutation\": {{\"rows\": \"rope\", \"from\": \"{}\", \"to\": \"{}\", \"heads\": {}, "
        "\"rule\": ",
        p.to == transform::RopeOrder::half_split ? "interleaved" : "half_split",
        p.to == transform::RopeOrder::half_split ? "half_split" : "interleaved", p.heads);
    append_string(out, plan.rule_labels[p.rule]);
    out += '}';
  }
  out += ", \"rule\": "sv;
  append_string(out, rule);
  if (t.composite < plan.composites.size()) {
    const Composite& c = plan.composites[t.composite];
    out += ", \"composite\": {\"dim\": "sv;
    append_uint(out, static_cast<std::uint64_t>(c.dim));
    out += c.stacked ? ", \"stacked\": true" : ", \"stacked\": false";
    out += ", \"parts_per_block\": "sv;
    append_uint(out, c.per_block);
    out += ", \"indices\": ["sv;
    for (std::size_t i = 0; i < c.indices.size(); ++i) {
      if (i > 0) out += ", ";
      append_uint(out, c.indices[i]);
    }
    out += "], \"parts\": ["sv;
    for (std::size_t i = 0; i < c.parts.size(); ++i) {
      if (i > 0) out += ", ";
      const PlannedTensor& part = c.parts[i];
      std::string one;
      append_tensor(one, plan, part, plan.sources[part.source], files, plan.rule_labels[part.rule]);
      out += std::string_view(one).substr(6);  // without the row's indentation
    }
    out += "]}"sv;
  }
  out += '}';
}

void append_optional_string(std::string& out, const std::optional<std::string>& value) {
  if (value) {
    append_string(out, *value);
  } else {
    out += "null"sv;
  }
}

// `"param_sources"`: only when the rules read a parameter from the checkpoint's files, so that
// other plans keep their bytes.
void append_param_sources(std::string& out, const Plan& plan) {
  if (plan.param_sources.empty()) return;
  out += ",\n  \"param_sources\": {"sv;
  bool first = true;
  for (const auto& [name, source] : plan.param_sources) {
    if (!first) out += ", ";
    first = false;
    append_string(out, name);
    switch (source.kind) {
      case rules::ParamSource::Kind::config:
        out += ": {\"from\": \"config\", \"file\": "sv;
        append_string(out, source.key.file);
        out += ", \"key\": "sv;
        append_string(out, source.key.key());
        out += "}"sv;
        break;
      case rules::ParamSource::Kind::default_value:
        out += ": {\"from\": \"default\"}"sv;
        break;
      case rules::ParamSource::Kind::flag:
      case rules::ParamSource::Kind::test:
        out += ": {\"from\": \"flag\", \"flag\": "sv;
        append_string(out, rules::param_flag(name));
        out += "}"sv;
        break;
    }
  }
  out += "}"sv;
}

void append_head(std::string& out, const Plan& plan, const PlanFilter& filter,
                 const std::vector<std::string_view>& files, std::size_t input_tensors) {
  auto it = std::back_inserter(out);
  fmt::format_to(it, "{{\n  \"format\": \"shardwise-plan\",\n  \"version\": 1,\n  \"model_parallel\": {},\n",
                 plan.model_parallel);
  // Only in mirrored plans, so that other plans keep their bytes.
  if (plan.naming == OutputNaming::mirror) out += "  \"output_naming\": \"mirror\",\n";
  if (plan.naming == OutputNaming::hf) {
    fmt::format_to(it, "  \"output_naming\": \"hf\",\n  \"max_shard_size\": {},\n", plan.max_shard_size);
  }
  out += "  \"params\": {"sv;
  bool first = true;
  for (const auto& [name, value] : plan.params) {
    if (!first) out += ", ";
    first = false;
    append_string(out, name);
    out += ": "sv;
    if (plan.param_choices.count(name) != 0) {
      append_string(out, param_value_text(plan, name, value));  // a choice: its word
    } else {
      fmt::format_to(it, "{}", value);
    }
  }
  out += "}"sv;
  append_param_sources(out, plan);
  out += ",\n  \"rules\": "sv;
  append_string(out, plan.rules_name);
  if (!plan.notes.empty()) {  // only when there are any, so plans without notes keep their bytes
    out += ",\n  \"notes\": ["sv;
    for (std::size_t i = 0; i < plan.notes.size(); ++i) {
      if (i > 0) out += ", ";
      append_string(out, plan.notes[i]);
    }
    out += "]"sv;
  }
  out += ",\n  \"input\": {\"root\": "sv;
  append_string(out, plan.input_root);
  out += ", \"files\": ["sv;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (i > 0) out += ", ";
    append_string(out, files[i]);
  }
  fmt::format_to(it, "], \"tensors\": {}, \"bytes\": {}}},\n  \"filter\": ", input_tensors, plan.input_bytes);
  append_optional_string(out, filter.pattern);
  out += ", \"filter_rank\": "sv;
  if (filter.rank) {
    append_uint(out, *filter.rank);
  } else {
    out += "null"sv;
  }
  out += ", \"filter_rule\": "sv;
  append_optional_string(out, filter.rule);
  out += ",\n"sv;
}

void append_tail(std::string& out, const Plan& plan, const detail::RowSelection& rows,
                 std::size_t input_tensors) {
  auto it = std::back_inserter(out);
  out += "  \"skipped\": ["sv;
  bool first = true;
  for (const Skipped& s : plan.skipped) {
    if (!rows.shows(s)) continue;
    out += first ? "\n    {\"name\": " : ",\n    {\"name\": ";
    first = false;
    append_string(out, s.name);
    out += ", \"file\": "sv;
    append_string(out, s.file);
    out += ", \"rule\": "sv;
    append_string(out, s.rule);
    out += ", \"reason\": "sv;
    append_string(out, s.reason);
    out += '}';
  }
  out += first ? "],\n  \"side_files\": [" : "\n  ],\n  \"side_files\": [";
  for (std::size_t i = 0; i < plan.side_files.size(); ++i) {
    if (i > 0) out += ", ";
    append_string(out, plan.side_files[i]);
  }
  if (!plan.generated_files.empty()) {  // only when there are any, as "notes"
    out += "],\n  \"generated_files\": ["sv;
    for (std::size_t i = 0; i < plan.generated_files.size(); ++i) {
      if (i > 0) out += ", ";
      fmt::format_to(it, "{{\"file\": ");
      append_string(out, plan.generated_files[i].file);
      fmt::format_to(it, ", \"from\": ");
      append_string(out, plan.generated_files[i].from);
      fmt::format_to(it, ", \"bytes\": {}}}", plan.generated_files[i].content.size());
    }
  }
  if (!plan.dropped_side_files.empty()) {  // only when there are any, as "notes"
    out += "],\n  \"dropped_side_files\": ["sv;
    for (std::size_t i = 0; i < plan.dropped_side_files.size(); ++i) {
      if (i > 0) out += ", ";
      append_string(out, plan.dropped_side_files[i]);
    }
  }
  std::uint64_t tensors = 0, bytes = 0;
  for (const OutputFile& f : plan.outputs) {
    tensors += f.tensors.size();
    bytes += f.bytes;
  }
  fmt::format_to(
      it,
      "],\n  \"totals\": {{\"output_files\": {}, \"tensors\": {}, \"bytes\": {}, \"replicated_bytes\": {}, "
      "\"skipped\": {}, \"input_tensors\": {}, \"input_bytes\": {}}}\n}}\n",
      plan.outputs.size(), tensors, bytes, plan.replicated_bytes, plan.skipped.size(), input_tensors,
      plan.input_bytes);
}

// The tensors of the outputs shown, in pieces of a few 1,000 (a piece within one output).
struct TensorPiece {
  const OutputFile* output;
  std::size_t begin;
  std::size_t end;
};

std::vector<TensorPiece> tensor_pieces(const Plan& plan, const detail::RowSelection& rows) {
  constexpr std::size_t kTensorsPerPiece = 1024;  // about 350 KB of text
  std::vector<TensorPiece> pieces;
  for (const OutputFile& f : plan.outputs) {
    if (rows.rank() && *rows.rank() != f.rank) continue;
    const std::size_t count = f.tensors.size();
    for (std::size_t begin = 0; begin == 0 || begin < count; begin += kTensorsPerPiece)
      pieces.push_back({&f, begin, std::min(count, begin + kTensorsPerPiece)});
  }
  return pieces;
}

}  // namespace

void write_plan_json(const Plan& plan, const PlanFilter& filter, const TextSink& sink) {
  const detail::RowSelection rows(plan, filter);
  std::vector<std::string_view> files;
  files.reserve(plan.input_files.size());
  for (const std::string& path : plan.input_files) files.push_back(detail::file_name_of(path));
  const std::size_t input_tensors = detail::input_tensor_count(plan);

  detail::ChunkedText chunks(sink);
  std::string& out = chunks.text;
  append_head(out, plan, filter, files, input_tensors);
  out += "  \"outputs\": ["sv;
  // Each piece's tensors, each after ",\n"; the pieces are joined here, in order: an output's
  // opening before its first piece, its first tensor shown without the comma, its closing after
  // its last piece.
  const std::vector<TensorPiece> pieces = tensor_pieces(plan, rows);
  std::size_t total = 0;
  for (const OutputFile& f : plan.outputs) total += f.tensors.size();
  bool first_output = true;
  bool any_tensor = false;  // of the current output
  detail::format_in_order(
      pieces.size(),
      [&](std::size_t k, std::string& text) {
        const TensorPiece& piece = pieces[k];
        for (std::size_t i = piece.begin; i < piece.end; ++i) {
          const PlannedTensor& t = piece.output->tensors[i];
          const Source& src = plan.sources[t.source];
          if (!rows.shows(piece.output->rank, t, src)) continue;
          text += ",\n";
          append_tensor(text, plan, t, src, files, plan.rule_labels[t.rule]);
        }
      },
      [&](std::size_t k, std::string& text) {
        const TensorPiece& piece = pieces[k];
        const OutputFile& f = *piece.output;
        if (piece.begin == 0) {
          out += first_output ? "\n    {\"rank\": " : ",\n    {\"rank\": ";
          first_output = false;
          any_tensor = false;
          fmt::format_to(std::back_inserter(out), "{}, \"file\": ", f.rank);
          append_string(out, f.file);
          fmt::format_to(std::back_inserter(out), ", \"bytes\": {}, \"tensor_count\": {}, \"tensors\": [",
                         f.bytes, f.tensors.size());
        }
        if (!text.empty()) {
          chunks.finish();
          sink(std::string_view(text).substr(any_tensor ? 0 : 1));
          any_tensor = true;
        }
        if (piece.end == f.tensors.size()) out += any_tensor ? "\n    ]}" : "]}";
      },
      detail::threads_for(total));
  out += first_output ? "],\n" : "\n  ],\n";
  append_tail(out, plan, rows, input_tensors);
  chunks.finish();
}

std::string format_plan_json(const Plan& plan, const PlanFilter& filter) {
  return detail::collect([&](const TextSink& sink) { write_plan_json(plan, filter, sink); });
}

nlohmann::json plan_to_json(const Plan& plan, const PlanFilter& filter) {
  return nlohmann::json::parse(format_plan_json(plan, filter));
}

}  // namespace shardwise::plan
