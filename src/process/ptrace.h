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
//  - Blocking syscalls: a thread interrupted inside read/accept/nanosleep resumes into the
//    kernel's own restart logic as long as its registers are untouched. RemoteSyscall
//    borrows a thread's registers; when it gives them back it performs the restart the
//    kernel would have (rip back onto the syscall instruction), because the kernel's
//    restart bookkeeping was consumed by the borrowed syscall.
//  - Signals arriving while stopped are recorded and delivered on resume.
//  - A borrowed syscall runs under the thread's own seccomp filters: RemoteSyscall
//    evaluates each call against them (seccomp.h) and refuses, rather than makes, one
//    they would kill or fail.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/addr.h"
#include "core/result.h"
#include "process/seccomp.h"

namespace ls::proc {

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
  user_regs_struct regs{};       // as stopped
  int pending_signal = 0;        // delivered on resume
  bool gone = false;             // exited while we held it
  bool stopped = false;          // in a ptrace-stop (seized threads start running)
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
  ~ThreadGroupStop();
  ThreadGroupStop(const ThreadGroupStop&) = delete;
  ThreadGroupStop& operator=(const ThreadGroupStop&) = delete;

  pid_t pid() const { return pid_; }
  std::vector<Thread>& threads() { return threads_; }
  Status set_regs(Thread& t, const user_regs_struct& regs);
  // Resumes and detaches every thread; idempotent. Records timing.resumed.
  void resume();
  const StopTiming& timing() const { return timing_; }

 private:
  explicit ThreadGroupStop(pid_t pid) : pid_(pid) {}
  static Result<std::unique_ptr<ThreadGroupStop>> stop_some(pid_t pid, size_t limit);
  // Seizes the threads in the task list not in `seen` (adding them), up to `limit` in all;
  // returns how many were added.
  Result<size_t> seize_fresh(std::set<pid_t>& seen, size_t limit);
  Status interrupt_and_wait(size_t from);
  Status wait_stopped(Thread& t);

  pid_t pid_;
  std::vector<Thread> threads_;
  StopTiming timing_;
  bool resumed_ = false;
};

// Runs system calls in a stopped thread and restores the thread exactly (see top).
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
  user_regs_struct saved_;
  uint64_t scratch_used_ = 0;
  int calls_made_ = 0;
};

// A `syscall` instruction (0f 05) in the target: in the vDSO or the first executable
// mapping that has one.
Result<TargetAddr> find_syscall_gadget(pid_t pid, const Memory& mem);

}  // namespace ls::proc
