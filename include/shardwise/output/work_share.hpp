#pragma once
// Which output files one run writes: every rank (a whole run), a rank subset (`--ranks 0-3,6`), or
// this process's share of a job started by a launcher (`--distributed`: MPI, Slurm or torchrun),
// balanced by bytes. Side files travel with rank 0. How partial runs share the output folder and
// complete the manifest together: docs/distributed.md.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <shardwise/plan/plan.hpp>

namespace shardwise::output {

// Parses "1,3" or "0-3,6" into ascending, distinct ranks, each below `model_parallel`. Throws
// Error(usage) quoting the text: an empty list or item, a non-number, a reversed range, a rank out
// of range.
std::vector<std::uint64_t> parse_rank_list(std::string_view text, std::uint64_t model_parallel);
// The shortest form of ascending, distinct ranks: {0,1,2,3,6} -> "0-3,6"; {} -> "none".
std::string format_rank_list(std::span<const std::uint64_t> ranks);

// Where this process stands in a launcher's job.
struct Launch {
  std::uint64_t index = 0;  // this process, 0 .. count-1
  std::uint64_t count = 1;  // processes in the job
  std::string source;       // the variables read, "SLURM_PROCID/SLURM_NTASKS"
};

// The (index, count) variable pairs read, in order of precedence: Open MPI, PMI (MPICH, Intel MPI,
// srun --mpi=pmi2), Slurm, torchrun.
inline constexpr std::pair<const char*, const char*> kLaunchVariables[] = {
    {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
    {"PMI_RANK", "PMI_SIZE"},
    {"SLURM_PROCID", "SLURM_NTASKS"},
    {"RANK", "WORLD_SIZE"},
};

// Returns the variable's value, or nullptr when it is not set.
using EnvLookup = std::function<const char*(const char*)>;

// The first pair of kLaunchVariables with both variables set. Throws Error(usage) listing every
// variable when no pair is complete, and naming the pair when its values are not numbers or the
// index is not below the count.
Launch launch_from_environment(const EnvLookup& lookup);
// The same, from this process's environment.
Launch launch_from_environment();

// The process (0 .. processes-1) writing each item, given each item's weight in bytes. Greedy and
// deterministic: heaviest item first (ties: lower index first), each to the process with the least
// bytes so far (ties: lower process index). `processes` must be at least 1.
std::vector<std::uint64_t> balance_by_bytes(std::span<const std::uint64_t> weights, std::uint64_t processes);

// Each rank's weight for balancing: its output file's tensor bytes; rank 0 also carries the side
// files (read from the input folder for their sizes).
std::vector<std::uint64_t> rank_weights(const plan::Plan& plan);

// The ranks process `launch.index` writes, ascending (maybe none: more processes than files).
std::vector<std::uint64_t> ranks_of_process(const plan::Plan& plan, const Launch& launch);

}  // namespace shardwise::output
