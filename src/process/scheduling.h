// Scheduling around the moments livesplice keeps a target's threads from running.
//
// Every phase that stops a thread of the target (the splice's stop of all of them, the
// thread borrowed for system calls) is a chain of wake-ups between livesplice and the
// stopped threads. On a loaded machine each wake-up of a normal-priority task can wait
// for a scheduler turn, and a chain of a few dozen of them turned a sub-millisecond
// window into hundreds of milliseconds. So for the length of such a phase livesplice
// runs at the lowest real-time priority on the CPU the target last ran on
// (RealtimeScope, CpuScope), and a borrowed thread runs at that priority too while it
// makes our calls (ThreadPriorityScope). Each is restored by its destructor; without the
// privilege each does nothing and the phase only runs slower.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <cstdint>

namespace ls::proc {

// Field `field` (1-based, as proc(5) numbers them; 3 or later) of
// /proc/PID/task/TID/stat (of /proc/PID/stat when tid is 0), or -1.
int64_t stat_field(pid_t pid, pid_t tid, int field);
// Field 3 of the same file, the state letter ('R', 'S', 'D', 't'...), or 0: not a number,
// so stat_field cannot read it.
char stat_state(pid_t pid, pid_t tid);

// This process at SCHED_FIFO priority 1, unless it already runs under another policy.
class RealtimeScope {
 public:
  RealtimeScope();
  ~RealtimeScope() { end(); }
  RealtimeScope(const RealtimeScope&) = delete;
  RealtimeScope& operator=(const RealtimeScope&) = delete;
  void end();

 private:
  int policy_ = -1;
  sched_param saved_{};
  bool raised_ = false;
};

// This process on the CPU thread `tid` of `pid` (the process's main thread when 0) last
// ran on: waking a thread on another CPU is an inter-processor interrupt, and in a
// virtual machine whose other vCPU is halted, a wait for that vCPU to be scheduled.
class CpuScope {
 public:
  explicit CpuScope(pid_t pid, pid_t tid = 0);
  ~CpuScope() { end(); }
  CpuScope(const CpuScope&) = delete;
  CpuScope& operator=(const CpuScope&) = delete;
  void end();
  // The CPU this process is kept on; -1 when it was not moved (or no longer is).
  int cpu() const { return moved_ ? cpu_ : -1; }

 private:
  cpu_set_t saved_{};
  int cpu_ = -1;
  bool moved_ = false;
};

// Thread `tid` of the target at SCHED_FIFO priority 1 while it runs system calls for us,
// so that each step it makes runs at once instead of after the threads ahead of it in
// its CPU's queue; its own policy and priority (nice stays as it was) come back in the
// destructor. Only for a thread that is stopped by us: it runs none of its own code
// while raised.
//  - With `cpu` >= 0 (livesplice's own CPU, CpuScope) the thread is also kept on that
//    CPU: the kernel sends a real-time task woken where a real-time task that cannot
//    move runs (livesplice, pinned) to another CPU, so every step would wake it across
//    CPUs and wake us back across them (measured: 30 µs of the first step alone).
//  - Raised with SCHED_RESET_ON_FORK: a thread it creates (parked.h) starts at normal
//    priority, behind livesplice in the CPU's queue, instead of running its first steps
//    before livesplice is told that the clone returned.
class ThreadPriorityScope {
 public:
  explicit ThreadPriorityScope(pid_t tid, int cpu = -1);
  ~ThreadPriorityScope();
  ThreadPriorityScope(const ThreadPriorityScope&) = delete;
  ThreadPriorityScope& operator=(const ThreadPriorityScope&) = delete;
  // The CPUs the thread may run on, as it had them (also when not pinned).
  const cpu_set_t& cpus() const { return cpus_; }

 private:
  pid_t tid_;
  int policy_ = -1;
  sched_param saved_{};
  bool raised_ = false;
  cpu_set_t cpus_{};
  bool pinned_ = false;
};

// A thread livesplice made in the target (parked.h), which runs only our calls: at
// SCHED_FIFO priority 1, on `cpus`. Best effort, as the scopes above.
void raise_own_thread(pid_t tid, const cpu_set_t& cpus);

}  // namespace ls::proc
