// A thread livesplice creates in the target, parks, and makes its system calls on
// (memfd_create, mmap, mprotect, close, munmap), so that no thread of the program is
// kept from running for them.
//
// A remote system call has to be made by a thread of the target. Borrowing one of the
// program's threads for the whole batch kept it stopped 200-700 µs — several times the
// splice's own stop — and when every thread serves (a single-threaded server), the one
// borrowed serves. So one of the program's threads is borrowed for a single call,
// clone(CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|
// CLONE_PTRACE): the new thread is traced by us as its creator is (seized), so it starts
// in a ptrace-stop before it runs a single instruction, and its creator does not stop
// to report the clone (PTRACE_O_TRACECLONE would: one round trip more). The borrowed
// thread is given back at once, and the batch runs on the new one while every thread
// of the program runs. It ends with exit() before the mapping is over: no later stop,
// no `view` and no ledger ever sees it.
//
// Why not one round trip for the batch on the borrowed thread instead: it would still
// hold a thread of the program for every call, and a stub making them needs executable
// memory of ours before anything of ours is mapped. What is left is the clone itself
// (measured on a 2-vCPU VM: a hold of 80-140 µs, against about 500 µs for three
// calls), which is still more than the splice's stop of a running thread; so the thread
// lent is preferably one asleep until a signal, which a hold with none arriving keeps
// from nothing (regions.h).
//
// What is hard:
//  - Signals. A process-directed signal is delivered to any thread that does not block
//    it. The new thread gets every signal blocked (PTRACE_SETSIGMASK) in its first stop,
//    before it runs anything, and the kernel never picks a thread in a ptrace-stop for
//    one. Every signal but SIGTRAP: the kernel delivers a single step's trap by force,
//    and forcing a signal a thread blocks resets the process's handler for it. Left: a signal sent in the microseconds between the clone and that first stop,
//    for which the kernel may choose the new thread (it wants signals the way its
//    creator does); it then stays pending for the process until another thread looks
//    (its creator does as it resumes, in the kernel's signal path, if still then).
//  - Our death. Between calls the thread is parked on an exit(0) at the syscall gadget:
//    were the tracer killed, the kernel would detach it and it would only exit. (Its
//    calls run inside a guardian child, guardian.h, which finishes them anyway.)
//  - Memory. The new thread starts on the borrowed thread's stack pointer, and the
//    borrowed thread runs again: nothing may be written below that pointer. The memfd
//    names need a few bytes, so a thread that needs scratch memory first maps a page of
//    its own, at a free address away from the regions about to be mapped, and unmaps it
//    before it exits.
//  - Seccomp. The new thread inherits the borrowed thread's filters; clone, exit and
//    the scratch page's mmap and munmap are evaluated (seccomp.h) before the clone is
//    made. A filter refusing any of them, or a clone refused by the kernel (the
//    process is at its thread limit: RLIMIT_NPROC, a pids cgroup), leaves the caller to
//    borrow the thread for the whole batch, as before.
#pragma once

#include <sched.h>
#include <sys/types.h>
#include "arch/registers.h"

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/addr.h"
#include "base/result.h"
#include "process/ptrace.h"

namespace ls::proc {

class ParkedThread {
 public:
  // A new thread, made by a clone() `borrowed` makes (a thread of `group`, in a stop of
  // ours). nullptr when the target cannot have one (see top; `why` then says why): the
  // caller keeps using `borrowed`. Otherwise give `borrowed` back, then take_over().
  static Result<std::unique_ptr<ParkedThread>> create(ThreadGroupStop& group, RemoteSyscall& borrowed,
                                                      std::string& why);
  // Waits for the new thread's first stop (it runs nothing of the program's before it),
  // parks it, blocks its signals, and raises it to the stop's priority on `cpus` (its
  // creator's own: it is born at normal priority, pinned as its creator was for the
  // clone, scheduling.h). Once, after create(), with its creator given back: the
  // creator waits for none of it.
  Status take_over(const cpu_set_t& cpus);
  ~ParkedThread() { (void)end(); }
  ParkedThread(const ParkedThread&) = delete;
  ParkedThread& operator=(const ParkedThread&) = delete;

  // Maps `bytes` of scratch memory for push_bytes at a free page that is in no range of
  // `avoid` (the regions about to be mapped), and makes the thread's calls from there.
  // Once, before the first call of the batch; `maps` as read_maps gave them.
  Status take_scratch(size_t bytes, std::span<const TargetRange> avoid);
  // The thread's calls; parked again after each.
  Result<int64_t> call(const PlannedCall& c);
  RemoteSyscall& remote() { return *sc_; }
  // Unmaps the scratch page and makes the thread exit; idempotent.
  Status end();

  pid_t tid() const { return thread_.tid; }
  // Calls made, and how long the thread lived (clone to exit).
  int calls() const { return calls_; }
  double lived_us() const;

 private:
  ParkedThread(ThreadGroupStop& group, pid_t tid, TargetAddr gadget, SeccompFilters filters);
  Status park(const arch::Registers& regs);

  ThreadGroupStop& group_;
  Thread thread_;
  TargetAddr gadget_;
  SeccompFilters filters_;
  arch::Registers parked_{};   // on exit(0) at the gadget
  std::unique_ptr<RemoteSyscall> sc_;
  std::optional<TargetRange> scratch_;
  int calls_ = 0;
  bool taken_ = false;   // take_over() was called
  bool ended_ = false;
  std::chrono::steady_clock::time_point born_, died_;
};

}  // namespace ls::proc
