// The safety check: with every thread stopped or held asleep (ptrace.h), is any thread
// executing, or will any return into, code that is about to be replaced (or, for undo,
// removed)?
//
// What is hard is doing it fast enough to sit inside the pause for hundreds of threads.
// Unwinding each stack precisely (libdwfl) costs milliseconds per thread and fails in
// code without CFI, such as our own new code. So the check is conservative and cheap:
// every thread's PC, then every 8-byte word of its live stack (rsp to the top of the
// mapping holding it), read for all threads with as few process_vm_readv calls as a
// pre-touched buffer allows (no allocation, no page fault inside the pause). A word counts as
// a return address into a guarded range when it falls inside it and the bytes before it
// decode as a call — or, regardless of that, when it points into the bytes a trampoline
// overwrites (returning there after the jump is written would execute half a jump).
// Conservative means a stale word can block an apply; the retry loop absorbs that, and
// the report names the thread and function.
#pragma once

#include <sys/uio.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/addr.h"
#include "core/result.h"
#include "process/maps.h"
#include "process/ptrace.h"
#include "process/trampoline.h"

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
  std::string describe() const;
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
  StackScratch();
  std::vector<uint8_t> buffer;
  std::vector<Piece> pieces;
  std::vector<iovec> local, remote;
  size_t bytes_read = 0;                       // by the last check
};

// nullopt when no thread blocks. `maps` may be stale: stacks not found in it are read
// up to 64 KiB. `start_stack` (proc(5)'s startstack: where argc was at exec; null when
// unknown) bounds the main thread's stack: above it are only argv, the environment and
// the auxiliary vector, often most of what the main stack holds.
Result<std::optional<Blocker>> check_threads(pid_t pid, const std::vector<Mapping>& maps,
                                             const std::vector<Thread>& threads,
                                             const std::vector<Guarded>& guarded, TargetAddr start_stack,
                                             StackScratch& scratch);

struct SafeStop {
  double pause_us = 0;
  int attempts = 0;
};

// The site edits of one attempt, computed once every thread is seized (no other tracer,
// so no other livesplice, can be writing the sites then).
using EditsNow = std::function<Result<std::vector<SiteEdit>>()>;

// Writes the edits once no thread blocks. Each attempt runs on its own tracer thread
// (on_tracer_thread): the running threads are stopped, the sleeping ones held asleep
// (ThreadGroupStop::stop_running); all are checked; the sites are armed with int3
// (SiteWriter); the sleepers that ran meanwhile are settled and checked again; only
// then are the edits finished. A blocked attempt puts every site back, resumes at once,
// waits `delay_ms` and tries again, up to `retries` more times (then fails with
// Exit::Unsafe naming the blocker). `before_attempt` may end the loop with a failed
// Status (the tool died). The threads are always resumed and the sites never left
// armed. -v prints where the pause went: stop, check, settle, write, resume.
Result<SafeStop> when_safe(Context& ctx, pid_t pid, const std::vector<Mapping>& maps,
                           const std::vector<Guarded>& guarded, const EditsNow& edits_now, int retries,
                           int delay_ms, const std::function<Status()>& before_attempt);

}  // namespace ls::proc
