// Stopping, inspecting and resuming every thread of a running process.
//
// What is hard:
//  - Never leaving the process stopped. Threads are attached with PTRACE_SEIZE and
//    stopped with PTRACE_INTERRUPT, never SIGSTOP: if this tool dies, the kernel detaches
//    its tracees and restarts every one in a ptrace-stop (a group-stop would persist).
//    ThreadGroupStop resumes and detaches everything in its destructor.
//  - Threads appearing while we stop the others: every thread is seized first, re-reading
//    the task list until it is stable, and only then interrupted. A thread can still
//    escape (its creator was inside clone(), or a listing skipped it while others
//    exited); once all are stopped the kernel's thread count and the creators' registers
//    show it, and only then is the list read again inside the pause.
//  - Blocking syscalls: interrupting a thread blocked in one ends the call. Most calls
//    restart by themselves, but epoll_wait, recv with SO_RCVTIMEO, sigtimedwait, semop
//    and others (signal(7)) return EINTR to the program. So seize_all() leaves a
//    thread asleep in the kernel asleep: seized, never interrupted, its user pc and sp
//    read from /proc/PID/task/TID/syscall (a consistent snapshot the kernel takes while
//    the thread is off the CPU), and how many times it has been given a CPU read just
//    before from .../schedstat. While that count is unchanged the thread has not run
//    since the snapshot, which settle() verifies. A sleeper that wakes and does anything
//    that matters stops by itself, being seized: it traps on an int3 the writer placed
//    (expect_traps: its pc is put back on the site, the SIGTRAP dropped), it receives
//    a signal, or it creates a task (PTRACE_O_TRACECLONE/FORK/VFORK: the new task
//    starts stopped and is held; a forked process gets its parent's code at the sites
//    before it runs). A seized thread cannot be detached without stopping it, and
//    stopping is what wakes it: sleepers are released by the kernel, untouched, when
//    the tracer thread exits, so seize_all() is for on_tracer_thread() only.
//  - RemoteSyscall borrows a thread's registers; when it gives them back it performs the
//    restart the kernel would have (rip back onto the syscall instruction), because the
//    kernel's restart bookkeeping was consumed by the borrowed syscall.
//  - A signal arriving while a thread is being stopped is delivered at once (its handler
//    frame is set up, the thread stops before running it): one given back at detach
//    from an interrupt's stop would be dropped by the kernel.
//  - A borrowed syscall runs under the thread's own seccomp filters: RemoteSyscall
//    evaluates each call against them (seccomp.h) and refuses, rather than makes, one
//    they would kill or fail.
#pragma once

#include <sys/types.h>
#include "arch/registers.h"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"
#include "process/seccomp.h"

namespace ls::proc {

class TaskFiles;
class ThreadCount;

// Memory of a live process through /proc/PID/mem; works whether or not it is stopped.
class Memory {
 public:
  static Result<Memory> open(pid_t pid);
  Memory(Memory&& o) noexcept : pid_(o.pid_), fd_(std::exchange(o.fd_, -1)) {}
  Memory& operator=(Memory&& o) noexcept;
  ~Memory();

  pid_t pid() const { return pid_; }
  Status read(TargetAddr at, std::span<uint8_t> out) const;
  Status write(TargetAddr at, std::span<const uint8_t> bytes) const;
  template <typename T>
  Result<T> read_value(TargetAddr at) const {
    T v;
    LS_TRY(read(at, std::span(reinterpret_cast<uint8_t*>(&v), sizeof v)));
    return v;
  }

 private:
  Memory(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  pid_t pid_ = 0;
  int fd_ = -1;
};

struct Thread {
  pid_t tid = 0;
  arch::Registers regs{};        // as stopped; a sleeper's only pc, sp and syscall number
  int pending_signal = 0;        // given back on resume (RemoteSyscall)
  bool gone = false;             // exited while we held it
  bool stopped = false;          // in a ptrace-stop (seized threads start running)
  bool asleep = false;           // held asleep in the kernel, not stopped (seize_all)
  uint64_t runs = 0;             // a sleeper's count of CPU turns, read before its snapshot
};

struct StopTiming {
  std::chrono::steady_clock::time_point first_stop;   // first PTRACE_INTERRUPT issued
  std::chrono::steady_clock::time_point all_stopped;
  std::chrono::steady_clock::time_point resumed;      // last thread resumed
  double pause_us() const {
    return std::chrono::duration<double, std::micro>(resumed - first_stop).count();
  }
};

// Every thread of a process, stopped. Resumes (and detaches) all of them on destruction
// or on resume(); the process is never left stopped by this object.
class ThreadGroupStop {
 public:
  // Seizes every thread, interrupts them all, waits until all are stopped. On failure
  // nothing is left seized.
  static Result<std::unique_ptr<ThreadGroupStop>> stop(pid_t pid);
  // Stops a single thread (the first that can be seized, the leader if alive) and lets
  // the others run: enough to borrow it for RemoteSyscall.
  static Result<std::unique_ptr<ThreadGroupStop>> stop_one(pid_t pid);
  // Stops thread `tid` of `pid` only.
  static Result<std::unique_ptr<ThreadGroupStop>> stop_thread(pid_t pid, pid_t tid);
  // Seizes every thread and stops none: those asleep in the kernel are held asleep (see
  // top; their registers are the snapshot's), those running are left running until
  // stop_running(). Only on a thread of on_tracer_thread(): the sleepers stay seized
  // until it ends.
  static Result<std::unique_ptr<ThreadGroupStop>> seize_all(pid_t pid);
  // After seize_all(): stops the threads found running (the pause starts), unless one is
  // asleep by now (then it is held asleep), and catches escaped ones as stop() does.
  // Returns the indices of the threads whose registers are new, which have not been
  // checked.
  Result<std::vector<size_t>> stop_running();
  ~ThreadGroupStop();
  ThreadGroupStop(const ThreadGroupStop&) = delete;
  ThreadGroupStop& operator=(const ThreadGroupStop&) = delete;

  pid_t pid() const { return pid_; }
  std::vector<Thread>& threads() { return threads_; }
  Status set_regs(Thread& t, const arch::Registers& regs);
  // Sites (their first byte) where an int3 may be written while sleepers can wake; each
  // range is what a process forked meanwhile gets copied from its parent before it runs.
  void expect_traps(std::vector<TargetRange> sites) { traps_ = std::move(sites); }
  // Brings every sleeper that ran since its snapshot to a known state again: asleep
  // (a new snapshot) or stopped; without `stop_awake`, one running is only no longer
  // counted asleep (before stop_running(), which stops it). Returns the indices of the
  // threads whose registers are new, which have not been checked.
  Result<std::vector<size_t>> settle(bool stop_awake = true);
  // Lets every stopped thread that `stays` does not hold run for `interval`, still
  // seized, then stops them again as stop_running() does (one asleep by then is held
  // asleep; one that trapped on a site stops on it). Returns the indices of the threads
  // whose registers are new.
  Result<std::vector<size_t>> run_for(std::chrono::microseconds interval,
                                      const std::function<bool(const Thread&)>& stays);
  // Stops thread `i`, held asleep until now, to borrow it inside the pause (hooks.h).
  // Its call ends as an interrupt ends it: choose one whose call the kernel restarts.
  Status stop_sleeper(size_t i);
  // Resumes and detaches every stopped thread (settling sleepers first, so that none is
  // left in a stop of ours); idempotent. Records timing.resumed.
  void resume();
  const StopTiming& timing() const { return timing_; }
  // How many times a thread trapped on one of expect_traps()'s sites.
  size_t trapped() const { return trapped_; }
  // How many processes held threads forked while held (each gets its parent's sites).
  size_t forked() const { return forked_.size(); }

 private:
  explicit ThreadGroupStop(pid_t pid);
  static Result<std::unique_ptr<ThreadGroupStop>> stop_some(pid_t pid, size_t limit, bool keep_sleepers);
  // Seizes the threads in the task list not in seen_ (adding them), up to `limit` in all;
  // returns how many were added.
  Result<size_t> seize_fresh(size_t limit);
  // Stops threads [from, end) not stopped yet; with keep_sleepers_, a thread found
  // asleep is held asleep instead. Adds the indices of those it changed to `fresh`.
  Status hold(size_t from, std::vector<size_t>& fresh);
  // Step 3 of a stop (ptrace.cc): threads that escaped the task list.
  Status catch_escaped(size_t limit, std::vector<size_t>& fresh);
  // Holds `t` asleep with the snapshot `l` (a Look, ptrace.cc).
  template <typename L>
  void hold_asleep(Thread& t, const L& l);
  TaskFiles& files(pid_t tid);
  // Waits for `t`'s interrupt stop; `reported` is a wait status already collected.
  Status wait_stopped(Thread& t, int reported = -1);
  bool trapped_on_site(pid_t tid, arch::Registers& regs) const;
  Status pass_signal(Thread& t, int sig);
  // Tasks created by held threads since the last call: threads join the stopped ones,
  // processes are held in forked_.
  Status adopt_born(std::vector<size_t>& fresh);

  pid_t pid_;
  std::unique_ptr<ThreadCount> count_;
  std::map<pid_t, std::unique_ptr<TaskFiles>> files_;
  bool keep_sleepers_ = false;
  unsigned long options_ = 0;     // PTRACE_SEIZE options
  std::set<pid_t> seen_;
  std::vector<Thread> threads_;
  std::vector<pid_t> born_;       // reported by their creators, not yet waited for
  std::vector<pid_t> forked_;     // other processes, stopped
  std::vector<TargetRange> traps_;
  size_t trapped_ = 0;
  StopTiming timing_;
  bool resumed_ = false;
};

// The registers to give back to a thread borrowed while stopped in a system call:
// `saved` as it was stopped, with the restart the kernel would have made done by hand
// (the borrowing consumed the kernel's own restart bookkeeping).
arch::Registers resumable(const arch::Registers& saved);

// Runs `fn` on a new thread of this process and waits for it. The kernel detaches the
// tasks that thread leaves seized when it exits, without waking them: seize_all()'s
// sleepers.
void on_tracer_thread(const std::function<void()>& fn);

// Runs one system call in a stopped thread and restores the thread exactly (see top).
// The thread must belong to a live ThreadGroupStop.
class RemoteSyscall {
 public:
  // `gadget` is the address of a `syscall` instruction in the target (find_syscall_gadget);
  // `filters` are the thread's seccomp filters (SeccompFilters::read).
  RemoteSyscall(ThreadGroupStop& group, Thread& thread, TargetAddr gadget, SeccompFilters filters = {});
  ~RemoteSyscall();   // restores the thread's registers
  RemoteSyscall(const RemoteSyscall&) = delete;
  RemoteSyscall& operator=(const RemoteSyscall&) = delete;

  // The syscall's return value (negative errno on failure), or a Status if the thread
  // could not be driven (it exited, or ptrace failed), or if the thread's seccomp filters
  // would not let the call run (Exit::Unsafe; the call is not made). One round trip: the
  // thread single-steps over the `syscall` instruction.
  Result<int64_t> call(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                       uint64_t a5 = 0, uint64_t a6 = 0);
  Result<int64_t> call(const PlannedCall& c);
  // Scratch memory below the thread's stack red zone, for passing strings and structs.
  Result<TargetAddr> push_bytes(const Memory& mem, std::span<const uint8_t> bytes);
  // Where the next push_bytes of `size` bytes will put them (for planning calls).
  TargetAddr next_scratch(size_t size) const;

  pid_t tid() const { return thread_.tid; }
  int calls_made() const { return calls_made_; }
  TargetAddr gadget() const { return gadget_; }
  const SeccompFilters& filters() const { return filters_; }

 private:
  ThreadGroupStop& group_;
  Thread& thread_;
  TargetAddr gadget_;
  SeccompFilters filters_;
  arch::Registers saved_;
  uint64_t scratch_used_ = 0;
  int calls_made_ = 0;
};

// Whether thread `tid`, in a ptrace-stop of ours, has a signal pending that `blocked`
// (a signal mask, bit N-1 for signal N) does not block: one of its own, or one of its
// process's. False when the queues cannot be read (ESRCH: the thread is gone).
Result<bool> signal_pending(pid_t tid, uint64_t blocked);

// Whether a thread stopped with `regs` was interrupted asleep in a call that only a
// signal ends (pause, rt_sigsuspend): one the interrupt's stop found there, which
// would have run again only once a signal it does not block was pending.
bool waits_for_signal(const arch::Registers& regs);

// A `syscall` instruction (0f 05) in the target: in the vDSO or the first executable
// mapping that has one.
Result<TargetAddr> find_syscall_gadget(pid_t pid, const Memory& mem);

}  // namespace ls::proc
