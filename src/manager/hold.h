// Holding one thread of a starting process, or of a process loading a library, from the
// moment it opens a watched file until the update manager has patched what it mapped:
// `livesplice watch` (watch.h) drives one Hold per permission event.
//
// The moment to patch is after ld.so has mapped the objects and before any of their
// code runs. ld.so names that moment for debuggers: it calls _dl_debug_state() with
// _r_debug.r_state RT_ADD before mapping and RT_CONSISTENT once everything is mapped,
// both at start (before any constructor and before the entry point) and in dlopen
// (before the new objects are relocated or initialized). So the thread is seized while
// its open waits for our answer, and a hardware breakpoint (debug register DR0, this
// thread only: no byte of the process is written, no other thread can trip on it) is
// set on _dl_debug_state; the stop where r_state is RT_CONSISTENT is the hold. A
// program with no ld.so (static) is held at its entry point instead.
//
// What is hard is handing the thread to the apply path, which attaches with ptrace of
// its own (a thread has one tracer). It is parked first: its registers and signal mask
// saved, every signal blocked, its pc set to a `syscall` instruction of the vDSO with
// pause(2) in rax, and detached. pause() returns only to run a signal handler, and
// every signal a handler could catch is blocked; a ptrace interrupt or a stop by job
// control ends the call with ERESTARTNOHAND, which the kernel (or RemoteSyscall)
// restarts. So the thread sleeps at a place of no program code until release(), which
// seizes it again and gives it back its registers and mask: it runs on from the
// breakpoint as if nothing had happened. Nothing is mapped or written for this.
//
// Every ptrace call of a Hold is made by the thread that seized it (a tracer is a
// thread); the destructor leaves the thread running as it was, whatever the state.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include "arch/registers.h"
#include "base/addr.h"
#include "base/result.h"

namespace ls::manager {

// What made the thread open the file: execve of a watched program, or ld.so mapping a
// watched library (at start or in dlopen).
enum class HoldKind { Exec, Load };

// Where ld.so reports its maps: the breakpoint, and &_r_debug.r_state (null when the
// program has no ld.so and is held at its entry point).
struct LoaderHook {
  TargetAddr breakpoint;
  TargetAddr state;
};

// The hook of process `pid` as its auxiliary vector and ld.so's dynamic symbols give it.
Result<LoaderHook> loader_hook(pid_t pid);

// Whether `pc` lies in the text of process `pid`'s ld.so (the file mapped at AT_BASE).
bool in_loader(pid_t pid, TargetAddr pc);

// What a Hold keeps where another process can read it (`livesplice watch` shares it with
// the daemon), should the holder be killed. The kernel then detaches the thread and it
// runs on, but not as it was: a breakpoint left set kills it with SIGTRAP at the hook,
// and a parked thread sleeps for ever with every signal blocked. rescue() mends both.
struct HoldRecord {
  std::atomic<pid_t> tid{0};          // the thread (after exec, its new id)
  std::atomic<bool> parked{false};    // set before park() changes its registers
  arch::Registers regs{};             // what park() saved (valid once parked is set)
  uint64_t mask = 0;
  uint64_t gadget = 0;                // the `syscall` it is parked at
};

// The thread of `record` whose holder died: seized again (waiting up to `limit` while
// another tracer, an apply, has it), its breakpoint cleared, and when it is parked (at
// the gadget, every signal blocked) its registers and mask given back; then detached.
// Whether it was parked.
Result<bool> rescue(const HoldRecord& record, std::chrono::milliseconds limit);

class Hold {
 public:
  // Seizes thread `tid` while its open of a watched file waits for our answer; keeps
  // `record` (when given, it must outlive the Hold) up to date.
  static Result<Hold> seize(pid_t tid, HoldKind kind, HoldRecord* record = nullptr);

  // After the open is answered: runs the thread (passing on its signals) until ld.so
  // has mapped everything (the hook with RT_CONSISTENT), then it is stopped there.
  // False, and the thread released, when it does not get there: it ended, its exec
  // failed, `stopping` was set, or `limit` passed.
  Result<bool> run_to_loaded(const std::atomic<bool>& stopping, std::chrono::milliseconds limit);

  // Stopped at the hook: parks the thread and detaches (see top).
  Status park();
  // Seizes the parked thread again, restores it, detaches: it runs on from the hook.
  Status release();

  pid_t pid() const { return tgid_; }   // the process (after exec, its thread's new id)
  pid_t tid() const { return tid_; }

  Hold(Hold&& o) noexcept;
  Hold& operator=(Hold&&) = delete;
  ~Hold();

 private:
  enum class State { Running, Stopped, Parked, Released };
  Hold(pid_t tid, pid_t tgid, HoldKind kind, HoldRecord* record)
      : tid_(tid), tgid_(tgid), kind_(kind), record_(record) {}
  void follow_exec();   // the thread that ran execve goes on as the leader
  // Waits for the thread's next stop; nullopt when `stopping` or the deadline came first
  // (it still runs), -1 status when it ended.
  Result<std::optional<int>> next_stop(const std::atomic<bool>& stopping,
                                       std::chrono::steady_clock::time_point deadline);
  Status arm();
  Status disarm();
  // Stops it where it is (PTRACE_INTERRUPT) and detaches it as it was.
  void let_go();

  pid_t tid_ = 0;
  pid_t tgid_ = 0;
  HoldKind kind_;
  HoldRecord* record_ = nullptr;
  State state_ = State::Running;
  std::optional<LoaderHook> hook_;
  bool armed_ = false;
  arch::Registers saved_regs_{};
  uint64_t saved_mask_ = 0;
};

}  // namespace ls::manager
