// Running an update's hooks (include/livesplice/patch.h) inside the target process.
//
// A hook is a function of the update's new code, called on one of the program's own
// threads, borrowed for the call the way the kernel borrows a thread for a signal
// handler: the thread is stopped, its registers saved, a call frame built on its stack
// below the red zone (the return address 0), its pc set to the hook; it runs with the
// thread's stack and thread-local storage (the header's wrapper saves errno); then its
// registers are put back exactly, with the restart of an interrupted system call the
// kernel would have made (ptrace.h, resumable).
//
// What is hard is that the hook is the patch author's code running in a process we
// must never leave broken:
//  - It returns by jumping to 0: the fault stops the thread (it is traced), and a fault
//    at pc 0 with the stack pointer just above the frame is the return; its value is in
//    rax. No byte of the program is written for it.
//  - It may fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT from abort(), a trap on an
//    int3 — such as the closed entry of a function being replaced): the signal is never
//    delivered; the thread gets its registers back and the hook's failure ends the apply
//    or undo with nothing changed. Another signal arriving meanwhile is kept for the
//    thread and delivered when it is resumed.
//  - It may never return (a lock another stopped thread holds, a loop): after the time
//    limit it is interrupted and abandoned the same way. What it had done by then stays
//    done; the header tells authors to make the write that matters last.
//  - Inside the stop (the APPLY and UNDO hooks) every other thread stays stopped or held
//    asleep; the thread borrowed is one the stop already stopped, else a sleeper whose
//    call the kernel restarts exactly (a sleep, a futex wait), never one in a call that
//    would return EINTR to the program.
// What a hook may not do (take locks, block, make threads, exit) is the author's
// contract, written in the header; the time limit catches the obvious breach.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/addr.h"
#include "base/diag.h"
#include "base/result.h"
#include "process/ledger.h"
#include "process/ptrace.h"
#include "update/contents.h"

namespace ls::proc {

struct HookCall {
  update::HookKind kind = update::HookKind::Apply;
  std::string label;           // "apply hook fix.o:fix_counts"
  TargetAddr at;               // the function run, as linked into the update's code
};

// What one hook did, for the report: its value, how long it ran.
struct HookRun {
  std::string label;
  int value = 0;
  double us = 0;
};

// The runs as JSON ({"hook", "value", "us"} each; apply and undo report them), and the
// same printed one line each for people.
nlohmann::json to_json(const std::vector<HookRun>& ran);
void print_hooks(const nlohmann::json& ran);

// The hooks of an update as linked at `symbol_at` (load::Image), in manifest order; an
// error when one has no address (it was not carried).
Result<std::vector<HookCall>> link_hooks(const update::Contents& u, const std::map<uint32_t, TargetAddr>& symbol_at);
// The hooks undo will run, to keep in the ledger entry (undo has no update file).
std::vector<LedgerHook> undo_hooks(const std::vector<HookCall>& hooks);
// And back: the ledger's hooks as calls.
std::vector<HookCall> hooks_of(const LedgerEntry& e);

// Runs the hooks of `kind` while the process runs (pre_*, post_*), each on the quietest
// thread (regions.h) stopped alone for it. Stops at the first that fails; a pre_* hook
// returning nonzero fails with Exit::Unsafe, naming it and its value.
Status run_hooks(pid_t pid, const std::vector<HookCall>& hooks, update::HookKind kind,
                 std::chrono::milliseconds limit, std::vector<HookRun>& ran);
// Runs the hooks of `kind` inside the stop `stop` (apply, undo), on one of its threads.
Status run_hooks_stopped(ThreadGroupStop& stop, const std::vector<HookCall>& hooks, update::HookKind kind,
                         std::chrono::milliseconds limit, std::vector<HookRun>& ran);

}  // namespace ls::proc
