// The safety check: with every thread stopped or held asleep (ptrace.h), is any thread
// executing, or will any return into, code that is about to be replaced (or, for undo,
// removed)?
//
// What is hard is being exact without being slow or unsafe. Every thread's PC first;
// then every 8-byte word of its live stack (rsp to the top of the mapping holding it),
// read for all threads with as few process_vm_readv calls as a pre-touched buffer
// allows (no allocation, no page fault inside the pause). A word is a candidate return
// address into a guarded range when it falls inside it and the bytes before it decode
// as a call — or, regardless of that, when it points into the bytes a trampoline
// overwrites (returning there after the jump is written would execute half a jump).
// A candidate is then judged by the thread's real frames, unwound with the CFI of the
// files it runs (unwind.h; modules read once, before the stop): a frame inside a
// guarded range blocks; a candidate in the part of the stack CFI covered, where no
// frame is guarded, is a dead word and does not (an idle process holding one was
// otherwise refused for ever). Where CFI is missing or cannot be followed (our own new
// code has none; a signal frame's is an expression) every candidate from the last
// frame found upward blocks, and the refusal says why CFI stopped and where the word
// was. Only threads holding a candidate are unwound: a walk costs microseconds a
// thread inside the pause, the scan a fraction of that, and most threads hold none.
// The scan therefore stays the net: a real return address it would miss (a call it
// cannot decode) is not looked for by CFI either.
//
// A function some thread is nearly always inside is never found empty by stopping and
// retrying: the hot wait (when_safe) traps its entry and lets the threads run out of it
// instead. What must not change is that the jumps are written only right after a
// check of every thread; the traps only make such a check come out clean.
#pragma once

#include <sys/uio.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"
#include "process/maps.h"
#include "process/ptrace.h"
#include "process/target.h"
#include "process/trampoline.h"
#include "process/unwind.h"

namespace ls::proc {

struct Guarded {
  TargetRange range;              // the code being replaced or removed
  TargetRange patched;            // the bytes a trampoline overwrites (may be empty)
  std::string label;              // "server.o:handle_get"
  std::vector<uint8_t> code;      // 16 bytes before range.start, then the range (for call checks)
};

// Reads the code of each guarded range (before the stop: code does not change).
Status load_guarded_code(const Memory& mem, std::vector<Guarded>& guarded);

struct Blocker {
  pid_t tid = 0;
  std::string label;
  TargetAddr address;
  bool executing = false;         // PC inside, rather than a return address on the stack
  int frame = -1;                 // >= 1: the frame CFI found it in
  int64_t sp_offset = -1;         // >= 0: found by the scan, this far above the thread's sp
  std::string scanned_because;    // why the scan, not CFI, covered that part of the stack
  std::string after_wait;         // how long it stayed with the entries trapped, who waited meanwhile
  std::string describe() const;
  std::string where() const;
};

// Memory for reading stacks inside the pause, allocated and touched before it: on a
// virtual machine one page fault can cost more than the whole read.
struct StackScratch {
  static constexpr size_t kBytes = 512 << 10;
  static constexpr size_t kMaxPieces = 1024;   // IOV_MAX
  struct Piece {
    size_t thread;        // index in the thread list
    TargetAddr at;        // where in the target
    size_t offset;        // where in `buffer`
    size_t length;
  };
  explicit StackScratch(pid_t pid);
  std::vector<uint8_t> buffer;
  PageReader pages;                            // for walks, of the target `pid`
  std::vector<Piece> pieces;
  std::vector<iovec> local, remote;
  size_t bytes_read = 0;                       // by the last check
  size_t threads_unwound = 0;                  // by the last check, with CFI
  size_t frames_unwound = 0;
  double unwind_us = 0;                        // the last check's time in walks
};

// nullopt when no thread blocks. `unwinder` (null: none could be built, and
// `no_unwinder` says why) finds each thread's frames; what it cannot cover is scanned.
// `maps` may be stale: stacks not found in it are read up to 64 KiB. `start_stack` (proc(5)'s startstack: where argc was at exec; null when
// unknown) bounds the main thread's stack: above it are only argv, the environment and
// the auxiliary vector, often most of what the main stack holds.
Result<std::optional<Blocker>> check_threads(pid_t pid, const std::vector<Mapping>& maps,
                                             const std::vector<Thread>& threads,
                                             const std::vector<Guarded>& guarded, TargetAddr start_stack,
                                             StackScratch& scratch, Unwinder* unwinder = nullptr,
                                             const std::string& no_unwinder = "");

struct SafeStop {
  double pause_us = 0;      // the attempt that acted: first interrupt to last resume
  double longest_us = 0;    // the longest stop of any attempt, blocked ones included
  int attempts = 0;
};

// The site edits of one attempt, computed once every thread is seized (no other tracer,
// so no other livesplice, can be writing the sites then).
using EditsNow = std::function<Result<std::vector<SiteEdit>>()>;

// How a safety stop is tried: `retries` more attempts after the first, `retry_delay_ms`
// apart, each letting threads run out of the guarded code for up to `hot_wait_ms`;
// And how long a hook may run before it is abandoned (hooks.h).
struct StopPolicy {
  int retries = 20;
  int retry_delay_ms = 10;
  int hot_wait_ms = 250;
  int hook_timeout_ms = 1000;
};

// Writes the edits once no thread blocks. Each attempt runs on its own tracer thread
// (on_tracer_thread): the running threads are stopped, the sleeping ones held asleep
// (ThreadGroupStop::stop_running); all are checked; the sites are armed with int3
// (SiteWriter); the sleepers that ran meanwhile are settled and checked again; only
// then are the edits finished. A blocked attempt puts every site back, resumes at once,
// waits `policy.retry_delay_ms` and tries again, up to `policy.retries` more times (then
// fails with Exit::Unsafe naming the blocker). `before_attempt` may end the loop with a
// failed Status (the tool died). The threads are always resumed and the sites never
// left armed. -v prints where the pause went: stop, check, settle, write, resume.
// A thread in the way when the running threads are stopped does not end the attempt
// at once: with the sites armed (so none can enter), the threads run in short
// intervals until none is in the way (the hot wait, docs/ARCHITECTURE.md), for at most
// `policy.hot_wait_ms` (0: no wait); a thread that reaches a site waits there, stopped,
// and runs the jump once it is written (or the original code, when the attempt ends
// blocked). The pause is then the longest any one thread was kept from running.
// The target's maps may be stale (stacks not found in them are read up to 64 KiB).
// `while_stopped` (may be empty) runs in the attempt that acts, after its last check and
// before the edits are finished, every thread stopped or held asleep and the sites
// armed: the APPLY and UNDO hooks (hooks.h). Its failure ends when_safe with it, nothing
// written, no retry.
using WhileStopped = std::function<Status(ThreadGroupStop&)>;
Result<SafeStop> when_safe(Context& ctx, const Target& target, const std::vector<Guarded>& guarded,
                           const EditsNow& edits_now, const StopPolicy& policy,
                           const std::function<Status()>& before_attempt, const WhileStopped& while_stopped = {});

}  // namespace ls::proc
