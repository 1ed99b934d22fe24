// Work on a target that must not be cut in half by our own death.
//
// Why: while a thread is borrowed for a system call its registers point at our syscall
// gadget, and while trampolines are being written some are in and some are not. If the
// tool were killed right then (SIGKILL, the OOM killer, a closed terminal), the kernel
// would resume the target in that state. So these critical sections run in a forked
// child in its own session that ignores terminal and termination signals: if the tool
// dies, the child still finishes its section (restoring registers, completing or
// rolling back the splice) and exits. The parent only waits for its report.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace ls::proc {

// How the child treats its memory. The child is a fork: every page it writes is first
// copied (copy-on-write), and on a virtual machine a page fault can cost tens of µs.
// Work that stops the target must not pay that while the target is stopped, so `Locked`
// makes the child fault in and lock everything first (mlockall, current and future
// pages) — milliseconds before the stop instead of hundreds of µs inside it.
enum class Paging { OnDemand, Locked };

// Runs `work` to completion in a child that outlives the caller; returns the payload
// the work produced, or its Status. An error too if the child died without reporting.
Result<std::string> run_to_completion(const std::function<Status(std::string& payload)>& work,
                                      Paging paging = Paging::OnDemand);

// Deterministic death, for the crash-consistency tests (tests/process/crash_test.cc).
// When the environment variable LIVESPLICE_KILL_AT names `phase`, the livesplice
// process `tool` (the command's own PID, taken before any guardian was forked) is
// killed with SIGKILL right here: by itself, or by the guardian child that reached the
// phase — which then carries on, as it would if the tool had been killed from outside.
// "PHASE+guardian" kills the guardian too (as the OOM killer might), leaving whatever
// state the phase is in for the next command to find. Nothing but livesplice's own
// processes can be signalled, and only when the parent is still `tool`. Phases are named
// "apply:..." and "undo:..." where each command calls this (listed in GLOSSARY.md).
void kill_point(pid_t tool, std::string_view phase);
// For tests too: with LIVESPLICE_SIGNAL_AT=PHASE:SIG in the environment, sends signal SIG
// to thread `tid` of `pid` when `phase` is reached (a signal arriving at a moment
// chosen: while a thread is lent, "lend:held").
void signal_point(pid_t pid, pid_t tid, std::string_view phase);

}  // namespace ls::proc
