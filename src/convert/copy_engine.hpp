#pragma once
// The threads that copy pieces into output files. Internal to convert.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include <shardwise/output/file_work.hpp>
#include <shardwise/output/output_run.hpp>
#include <shardwise/output/page_cache.hpp>
#include <shardwise/output/progress.hpp>
#include <shardwise/plan/plan.hpp>

namespace shardwise::convert {

// Writes every file of `work` with `threads` threads, each with staging buffers of `piece_bytes`.
// Neighbouring pieces of a file are copied together up to a window (a large piece alone); a thread
// takes the next job of the first file no other thread is in, or else of the first file with jobs
// left (jobs of a file in data order). A file is committed by whichever thread finishes its last
// piece. On any error or interruption, the first
// error is rethrown once every thread stopped, and every uncommitted temporary is removed.
// `on_commit` (when set) gets each file's manifest entry right after the file is under its final
// name, on the committing thread; what it throws fails the run. `before_commit` (when set) runs on
// the committing thread once a file's last byte is written, before the file gets its final name;
// what it throws fails the run, that file still a temporary. Written data is sent on its way to
// disk (sync_file_range) in whole chunks of the file as the pieces complete them. With `cache` drop
// (never automatic here), the pieces a file's writing has left kDropBehindBytes behind are waited
// for and dropped from the page cache, the whole file before its commit, and each 8 MiB chunk of
// an input once every source range in it was read for the last time; with keep, the page cache
// is left to the kernel.
// `work` is consumed as it goes: a file's prefix once hashed, its layout's header once written, its
// tensors, pieces and the layout's per-tensor vectors once committed; planned, final_path and the
// layout's sizes stay.
void copy_files(const plan::Plan& plan, std::vector<output::FileWork>& work, unsigned threads,
                std::size_t piece_bytes, output::PageCache cache, output::Progress& progress,
                const output::CommitHook& on_commit = {}, const output::PreCommitCheck& before_commit = {});

}  // namespace shardwise::convert
