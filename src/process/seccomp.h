// What a thread's seccomp filters would do with a system call livesplice plans to make
// in it, decided before the call is made.
//
// Why: a system call injected into a thread (RemoteSyscall) runs under that thread's
// own filters, exactly as if the program had made it. A filter that kills on a call it
// did not expect kills the whole process; one that answers EPERM fails the call without
// saying why. So the filters are read (PTRACE_SECCOMP_GET_FILTER: the classic BPF the
// program installed) and run here, on the very seccomp_data the kernel would build:
// number, architecture, the instruction pointer after the `syscall` instruction used,
// and every argument as it will be passed.
//
// What is hard: getting the kernel's semantics exactly. Every filter of the thread runs
// and the verdict of highest precedence wins (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO
// > USER_NOTIF > TRACE > LOG > ALLOW; among equals, the most recently installed). A
// filter the evaluator cannot run (an instruction seccomp's own checker would refuse, a
// jump out of the program) counts as killing: "unknown" must never be read as "allowed".
// Strict mode (SECCOMP_MODE_STRICT) allows only read, write, exit and rt_sigreturn.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"

namespace ls::proc {

// struct seccomp_data, as the kernel lays it out for a filter.
struct SeccompData {
  int32_t nr = 0;
  uint32_t arch = 0;
  uint64_t instruction_pointer = 0;
  std::array<uint64_t, 6> args{};
};

// One call as it will be made: for evaluation and for messages.
struct PlannedCall {
  long nr = 0;
  std::array<uint64_t, 6> args{};
  std::string describe() const;   // "mmap(0x7f.., 8192, PROT_READ|PROT_EXEC, MAP_SHARED|.., 3, 0)"
};

struct SeccompVerdict {
  uint32_t action = 0x7fff0000;   // SECCOMP_RET_ALLOW
  uint16_t data = 0;              // the errno of SECCOMP_RET_ERRNO, the value of TRACE/TRAP
  // The call runs (ALLOW, LOG). TRACE does not count: we trace without
  // PTRACE_O_TRACESECCOMP, so the kernel would fail the call with ENOSYS.
  bool runs() const;
  // "would be killed by the target's seccomp filter (SECCOMP_RET_KILL_PROCESS)".
  std::string describe() const;
};

// Runs one classic BPF seccomp program. An instruction seccomp does not accept, or a
// program that runs off its end, gives SECCOMP_RET_KILL_PROCESS.
SeccompVerdict run_seccomp_program(std::span<const sock_filter> program, const SeccompData& data);

// The filters of one thread, read while it is in a ptrace-stop of ours.
class SeccompFilters {
 public:
  // The thread's seccomp mode as /proc/PID/task/TID/status says ("Seccomp:"; 0 when
  // unknown), read before the thread is stopped: reading it costs more than the rest of
  // a borrow.
  static int mode(pid_t pid, pid_t tid);
  // Every filter of thread `tid`, which must be in a ptrace-stop of ours; `mode_before`
  // from mode(). A filter installed since mode() was read is found all the same. Fails
  // (Exit::Unsafe) when the thread has filters that cannot be read: what they would do
  // is then unknown.
  static Result<SeccompFilters> read(pid_t tid, int mode_before);
  // No filter at all: every call runs.
  SeccompFilters() = default;

  bool any() const { return strict_ || !programs_.empty(); }
  // The verdict for `call` made by a `syscall` instruction at `gadget`.
  SeccompVerdict evaluate(const PlannedCall& call, TargetAddr gadget) const;
  // The first call of `calls` that would not run, as "CALL VERDICT"; "" when all run.
  std::string first_refused(std::span<const PlannedCall> calls, TargetAddr gadget) const;

 private:
  bool strict_ = false;
  std::vector<std::vector<sock_filter>> programs_;   // most recently installed first
};

}  // namespace ls::proc
