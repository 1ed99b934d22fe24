// The perf map: the new code's functions named for perf, which reads
// /tmp/perf-PID.map for code no file on disk describes (what JIT compilers write). One
// line per function, `START SIZE NAME`, START and SIZE in hex without 0x.
//
// What is hard:
//  - The file may already hold a JIT's lines, and the JIT may still be writing: only
//    ever appended to (O_APPEND, all our lines in one write), never truncated or
//    rewritten. A JIT that keeps its own offset instead of appending (fopen "w") may
//    write over our lines afterwards; nothing outside the program can prevent that.
//  - Undo leaves the lines. perf reads the map when it reports, usually after the
//    program has exited, against every sample taken while it ran; the file has no
//    notion of time, so removing a line would leave the samples taken while the update
//    was applied nameless. Once undone nothing runs there again (the code is unmapped),
//    so an old line names nothing new — unless a later update is placed at the same
//    address, when perf holds two names for one range and shows one of them.
//  - /tmp is writable by everyone and livesplice runs as root: the file is opened
//    without following a symlink, must be a regular file owned by root or by the
//    process's user, and one we create is given to the process's user, as if the
//    program had created it (so a JIT starting later can still write it; perf reads a
//    map owned by the user who runs it, or by root, or any with -f).
//  - Names are demangled (base/demangle.h), as perf shows an object's own symbols, so a
//    profile names the new code as it names the old.
// Writing the map is a courtesy to the profiler, never a reason to fail the apply: a
// problem is a warning.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "base/addr.h"
#include "base/result.h"

namespace ls::proc {

struct PerfMapLine {
  TargetAddr start;
  uint64_t size = 0;
  std::string name;
};

// "/tmp/perf-PID.map".
std::string perf_map_path(pid_t pid);
// The lines as perf reads them.
std::string perf_map_text(const std::vector<PerfMapLine>& lines);
// Appends `lines` to `pid`'s perf map (created, owned by the process's user, if absent).
Status append_perf_map(pid_t pid, const std::vector<PerfMapLine>& lines);

}  // namespace ls::proc
