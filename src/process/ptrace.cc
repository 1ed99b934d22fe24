#include "process/ptrace.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <thread>

#include "process/maps.h"

namespace ls::proc {

namespace {

// Kernel-internal restart codes a thread stopped inside a syscall may show in rax.
constexpr int64_t kERestartSys = -512;
constexpr int64_t kERestartNoIntr = -513;
constexpr int64_t kERestartNoHand = -514;
constexpr int64_t kERestartRestartBlock = -516;

std::vector<pid_t> list_tasks(pid_t pid) {
  std::vector<pid_t> out;
  DIR* d = opendir(fmt::format("/proc/{}/task", pid).c_str());
  if (!d) return out;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') out.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// Whether a thread is past the point of no return (a zombie or gone): seizing one
// fails with EPERM, which must not be mistaken for a permission problem.
bool exiting(pid_t pid, pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return true;
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');
  return !p || p[1] == 0 || p[2] == 'Z' || p[2] == 'X' || p[2] == 'x';
}

}  // namespace

// The kernel's count of the threads in the group, or 0: procfs gives the task
// directory a link count of two plus the number of threads, computed at each stat.
// One fstat() of the directory opened before the pause (no path to walk inside it) is
// several times cheaper than generating /proc/PID/stat, which sums every thread's times.
class ThreadCount {
 public:
  explicit ThreadCount(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    fd_ = ::open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  }
  ~ThreadCount() {
    if (fd_ >= 0) ::close(fd_);
  }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;
  size_t now() const {
    struct stat st;
    if (fd_ < 0 || ::fstat(fd_, &st) != 0 || st.st_nlink < 2) return 0;
    return st.st_nlink - 2;
  }

 private:
  int fd_ = -1;
};

namespace {


// What a seized, not stopped, thread is doing, as far as /proc shows without stopping it.
struct Look {
  enum What { Asleep, Running, Reported, Gone } what = Running;
  uint64_t runs = 0;     // CPU turns (schedstat's third field), read first
  long nr = -1;          // the system call it sleeps in (-1: asleep outside one, e.g. a fault)
  uint64_t sp = 0, pc = 0;
  int status = 0;        // Reported: the wait status of a stop it entered
};

// Reads a small /proc file whole from `fd` (pread at 0 makes the kernel generate it
// anew) or, without one, by path; -1 when it cannot be read (the task is gone, or, for
// syscall, changed state as it was read).
ssize_t read_small(int fd, const char* path, char* buf, size_t size) {
  ssize_t n;
  if (fd >= 0) {
    n = ::pread(fd, buf, size - 1, 0);
  } else {
    int own = ::open(path, O_RDONLY | O_CLOEXEC);
    if (own < 0) return -1;
    n = ::read(own, buf, size - 1);
    ::close(own);
  }
  if (n >= 0) buf[n] = 0;
  return n;
}

}  // namespace

// The /proc files of a held thread that are read while others wait, opened once before:
// inside the pause a path walk per read costs more than the read itself. Without the
// descriptors to spare (hundreds of threads), each read opens its file.
class TaskFiles {
 public:
  TaskFiles(pid_t pid, pid_t tid) {
    std::snprintf(schedstat_, sizeof schedstat_, "/proc/%d/task/%d/schedstat", pid, tid);
    std::snprintf(syscall_, sizeof syscall_, "/proc/%d/task/%d/syscall", pid, tid);
    schedstat_fd_ = ::open(schedstat_, O_RDONLY | O_CLOEXEC);
    syscall_fd_ = ::open(syscall_, O_RDONLY | O_CLOEXEC);
  }
  ~TaskFiles() {
    if (schedstat_fd_ >= 0) ::close(schedstat_fd_);
    if (syscall_fd_ >= 0) ::close(syscall_fd_);
  }
  TaskFiles(const TaskFiles&) = delete;
  TaskFiles& operator=(const TaskFiles&) = delete;

  // The number of times the thread was given a CPU: each time it runs after sleeping it
  // is counted once more, so an unchanged count means it has not run in between.
  bool cpu_turns(uint64_t& runs) const {
    char buf[128];
    unsigned long long on_cpu, waited, turns;
    if (read_small(schedstat_fd_, schedstat_, buf, sizeof buf) <= 0 ||
        std::sscanf(buf, "%llu %llu %llu", &on_cpu, &waited, &turns) != 3)
      return false;
    runs = turns;
    return true;
  }
  ssize_t syscall(char* buf, size_t size) const { return read_small(syscall_fd_, syscall_, buf, size); }

 private:
  char schedstat_[64], syscall_[64];
  int schedstat_fd_ = -1, syscall_fd_ = -1;
};

namespace {

// The order matters: the count before the snapshot (so that an unchanged count later
// covers the whole time since the snapshot), and the wait for a reported stop after it
// (a thread in a ptrace-stop is off the CPU too, and its report is posted before it
// leaves the CPU, so one the snapshot saw stopped is seen here).
Look look(const TaskFiles& files, pid_t tid) {
  Look l;
  if (!files.cpu_turns(l.runs)) {
    l.what = Look::Gone;
    return l;
  }
  char buf[256];
  ssize_t n = files.syscall(buf, sizeof buf);
  unsigned long long a[8];
  long nr;
  if (n > 0 && std::sscanf(buf, "%ld %llx %llx %llx %llx %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3], &a[4],
                           &a[5], &a[6], &a[7]) == 9) {
    l = {Look::Asleep, l.runs, nr, a[6], a[7]};
  } else if (n > 0 && std::sscanf(buf, "%ld %llx %llx", &nr, &a[0], &a[1]) == 3 && nr == -1) {
    l = {Look::Asleep, l.runs, nr, a[0], a[1]};
  }
  int status = 0;
  pid_t r = waitpid(tid, &status, WNOHANG | __WALL);
  if (r == tid) {
    l.what = WIFEXITED(status) || WIFSIGNALED(status) ? Look::Gone : Look::Reported;
    l.status = status;
  }
  return l;
}

}  // namespace

Result<bool> signal_pending(pid_t tid, uint64_t blocked) {
  // Both queues, a page of entries at a time: blocked ones are listed too.
  for (uint32_t flags : {0u, static_cast<uint32_t>(PTRACE_PEEKSIGINFO_SHARED)}) {
    siginfo_t infos[32];
    for (uint64_t off = 0;; off += std::size(infos)) {
      __ptrace_peeksiginfo_args args{off, flags, static_cast<int32_t>(std::size(infos))};
      long n = ptrace(PTRACE_PEEKSIGINFO, tid, &args, infos);
      if (n < 0) {
        if (errno == ESRCH) return false;
        return error("thread {}: cannot read its pending signals: {}", tid, std::strerror(errno));
      }
      for (long i = 0; i < n; ++i)
        if (infos[i].si_signo > 0 && !(blocked & (uint64_t{1} << (infos[i].si_signo - 1)))) return true;
      if (n < static_cast<long>(std::size(infos))) break;
    }
  }
  return false;
}

namespace {

// Stopped right after a system call that returned EINTR with no signal of its own to
// explain it (none queued that it does not block; a handler would have been entered
// before the stop): our interrupt ended the call.
bool ended_by_interrupt(pid_t tid, const arch::Registers& regs) {
  if (arch::syscall_number(regs) < 0 || arch::syscall_result(regs) != -EINTR) return false;
  uint64_t blocked = 0;
  if (ptrace(PTRACE_GETSIGMASK, tid, sizeof blocked, &blocked) != 0) return false;
  if (auto pending = signal_pending(tid, blocked); !pending || *pending) return false;
  errno = 0;
  long word = ptrace(PTRACE_PEEKTEXT, tid, arch::pc(regs) - arch::kSyscallInstructionSize, nullptr);
  return errno == 0 && arch::is_syscall_instruction(static_cast<uint64_t>(word));
}

// The int3 (SIGTRAP, si_code SI_KERNEL) a thread took, still queued to it: a thread can
// reach its interrupt's stop before the trap's signal is dequeued.
bool trap_queued(pid_t tid) {
  __ptrace_peeksiginfo_args args{0, 0, 8};
  siginfo_t info[8];
  long n = ptrace(PTRACE_PEEKSIGINFO, tid, &args, info);
  for (long i = 0; i < n; ++i)
    if (info[i].si_signo == SIGTRAP && info[i].si_code == SI_KERNEL) return true;
  return false;
}

}  // namespace

// --- Memory -------------------------------------------------------------------------

Result<Memory> Memory::open(pid_t pid) {
  std::string path = address_space_dir(pid) + "/mem";
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return proc_error(pid, path, errno);
  return Memory(pid, fd);
}

Memory& Memory::operator=(Memory&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    pid_ = o.pid_;
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

Memory::~Memory() {
  if (fd_ >= 0) ::close(fd_);
}

Status Memory::read(TargetAddr at, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(at.value() + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return error("process {}: cannot read {} bytes at {}: {}", pid_, out.size(), at + done,
                   n < 0 ? std::strerror(errno) : "unmapped");
    done += n;
  }
  return {};
}

// Shared mappings refuse forced writes through /proc/PID/mem (only private ones get a
// copy-on-write page). Our own regions are shared memfds: write through the mapped file.
static Status write_through_file(pid_t pid, TargetAddr at, std::span<const uint8_t> bytes) {
  auto maps = read_maps(pid);
  if (!maps) return maps.status();
  const Mapping* m = mapping_at(*maps, at);
  if (!m || !m->shared || !mapping_at(*maps, at + static_cast<int64_t>(bytes.size() - 1)))
    return error("process {}: {} is not in a shared mapping", pid, at);
  std::string path = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m->range.start.value(), m->range.end.value());
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return error("process {}: cannot open the file mapped at {}: {}", pid, at, std::strerror(errno));
  off_t off = static_cast<off_t>(m->file_offset + (at - m->range.start));
  ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), off);
  ::close(fd);
  if (n != static_cast<ssize_t>(bytes.size())) return error("process {}: cannot write the file mapped at {}", pid, at);
  return {};
}

Status Memory::write(TargetAddr at, std::span<const uint8_t> bytes) const {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(at.value() + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EIO && done == 0) return write_through_file(pid_, at, bytes);
    if (n <= 0)
      return error("process {}: cannot write {} bytes at {}: {}", pid_, bytes.size(), at + done,
                   n < 0 ? std::strerror(errno) : "unmapped");
    done += n;
  }
  return {};
}

// --- ThreadGroupStop ------------------------------------------------------------------

ThreadGroupStop::ThreadGroupStop(pid_t pid) : pid_(pid), count_(std::make_unique<ThreadCount>(pid)) {}

Result<std::unique_ptr<ThreadGroupStop>> ThreadGroupStop::stop(pid_t pid) { return stop_some(pid, SIZE_MAX, false); }

Result<std::unique_ptr<ThreadGroupStop>> ThreadGroupStop::stop_thread(pid_t pid, pid_t tid) {
  std::unique_ptr<ThreadGroupStop> g(new ThreadGroupStop(pid));
  g->options_ = PTRACE_O_TRACESYSGOOD;
  if (ptrace(PTRACE_SEIZE, tid, nullptr, g->options_) != 0)
    return error("process {}: cannot attach to thread {}: {}", pid, tid, std::strerror(errno));
  g->seen_.insert(tid);
  g->threads_.push_back(Thread{tid});
  g->timing_.first_stop = std::chrono::steady_clock::now();
  std::vector<size_t> fresh;
  LS_TRY(g->hold(0, fresh));
  if (g->threads_.front().gone) return error("process {}: thread {} exited while being stopped", pid, tid);
  g->timing_.all_stopped = std::chrono::steady_clock::now();
  return g;
}

Result<std::unique_ptr<ThreadGroupStop>> ThreadGroupStop::stop_one(pid_t pid) { return stop_some(pid, 1, false); }

Result<std::unique_ptr<ThreadGroupStop>> ThreadGroupStop::seize_all(pid_t pid) {
  return stop_some(pid, SIZE_MAX, true);
}

Result<std::unique_ptr<ThreadGroupStop>> ThreadGroupStop::stop_some(pid_t pid, size_t limit, bool keep_sleepers) {
  std::unique_ptr<ThreadGroupStop> g(new ThreadGroupStop(pid));
  g->keep_sleepers_ = keep_sleepers;
  g->options_ = PTRACE_O_TRACESYSGOOD;
  // Held sleepers can wake and create tasks: those must start stopped (see top).
  if (keep_sleepers) g->options_ |= PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK;

  // 1. Before the pause: seize (attach without stopping) every thread, re-reading the
  //    task list until it shows none we have not seized.
  for (int round = 0; round < 64 && g->threads_.size() < limit; ++round) {
    auto fresh = g->seize_fresh(limit);
    if (!fresh) return fresh.status();
    if (*fresh == 0) break;
  }
  if (g->threads_.empty()) return error("process {}: no threads to stop (has it exited?)", pid);
  if (keep_sleepers) {
    // Still before the pause: which threads sleep (stop_running() stops the others).
    for (auto& t : g->threads_) {
      Look l = look(g->files(t.tid), t.tid);
      if (l.what == Look::Asleep) g->hold_asleep(t, l);
      if (l.what == Look::Gone) t.gone = true;
      if (l.what == Look::Reported) {
        // In a stop of its own already (a signal): taken over, as stop() would.
        ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
        LS_TRY(g->wait_stopped(t, l.status));
      }
    }
    return g;
  }

  // 2. The pause starts: interrupt all, then wait for them.
  std::vector<size_t> fresh;
  g->timing_.first_stop = std::chrono::steady_clock::now();
  LS_TRY(g->hold(0, fresh));
  LS_TRY(g->catch_escaped(limit, fresh));
  g->threads_.erase(std::remove_if(g->threads_.begin(), g->threads_.end(), [](const Thread& t) { return t.gone; }),
                    g->threads_.end());
  if (g->threads_.empty()) return error("process {}: exited while being stopped", pid);
  g->timing_.all_stopped = std::chrono::steady_clock::now();
  return g;
}

Result<std::vector<size_t>> ThreadGroupStop::stop_running() {
  std::vector<size_t> fresh;
  timing_.first_stop = std::chrono::steady_clock::now();
  LS_TRY(hold(0, fresh));
  LS_TRY(catch_escaped(SIZE_MAX, fresh));
  if (std::all_of(threads_.begin(), threads_.end(), [](const Thread& t) { return t.gone; }))
    return error("process {}: exited while being stopped", pid_);
  timing_.all_stopped = std::chrono::steady_clock::now();
  return fresh;
}

// 3. A thread can still have escaped: its creator was inside clone() when it was seized
//    (too late for the child to be traced along, too early for it to be in the list), or
//    a listing skipped it (/proc's task list is read by position, and threads exiting
//    meanwhile shift the positions). Stopped threads create no more threads and do not
//    exit (a held sleeper that wakes to do so stops first), so the kernel's own count
//    settles it: while it exceeds the threads we hold (or a creator stopped right at
//    clone's exit), read the list again.
Status ThreadGroupStop::catch_escaped(size_t limit, std::vector<size_t>& fresh) {
  for (size_t checked = 0, round = 0; round < 64 && threads_.size() < limit; ++round) {
    bool in_clone = false;
    for (size_t i = checked; i < threads_.size(); ++i) {
      const Thread& t = threads_[i];
      in_clone |= !t.gone && (arch::syscall_number(t.regs) == SYS_clone || arch::syscall_number(t.regs) == SYS_clone3);
    }
    size_t held = std::count_if(threads_.begin(), threads_.end(), [](const Thread& t) { return !t.gone; });
    if (!in_clone && count_->now() <= held) break;
    checked = threads_.size();
    auto added = seize_fresh(limit);
    if (!added) return added.status();
    if (*added == 0) {
      if (round >= 8) break;   // e.g. an exited leader still counted: nothing left to find
      continue;
    }
    LS_TRY(hold(checked, fresh));
  }
  return {};
}

Result<size_t> ThreadGroupStop::seize_fresh(size_t limit) {
  size_t added = 0;
  for (pid_t tid : list_tasks(pid_)) {
    if (threads_.size() >= limit) break;
    if (!seen_.insert(tid).second) continue;
    if (ptrace(PTRACE_SEIZE, tid, nullptr, options_) == 0) {
      threads_.push_back(Thread{tid});
      ++added;
    } else if (errno != ESRCH && !(errno == EPERM && exiting(pid_, tid))) {   // it exited meanwhile
      int err = errno;
      return error("process {}: cannot attach to thread {}: {}{}", pid_, tid, std::strerror(err),
                   err == EPERM ? " (are you root? is another tracer attached? see /proc/sys/kernel/yama/ptrace_scope)"
                                : "");
    }
  }
  return added;
}

TaskFiles& ThreadGroupStop::files(pid_t tid) {
  auto& f = files_[tid];
  if (!f) f = std::make_unique<TaskFiles>(pid_, tid);
  return *f;
}

template <typename L>
void ThreadGroupStop::hold_asleep(Thread& t, const L& l) {
  t.asleep = true;
  t.runs = l.runs;
  arch::set_pc(t.regs, l.pc);
  arch::set_sp(t.regs, l.sp);
  arch::set_syscall_number(t.regs, l.nr);
}

Status ThreadGroupStop::hold(size_t from, std::vector<size_t>& fresh) {
  std::vector<std::pair<size_t, int>> to_wait;   // thread, wait status already collected (-1: none)
  for (size_t i = from; i < threads_.size(); ++i) {
    Thread& t = threads_[i];
    if (t.gone || t.stopped || (keep_sleepers_ && t.asleep)) continue;
    int reported = -1;
    if (keep_sleepers_) {
      // Looked at again right before its interrupt: one that went to sleep since
      // seize_all() would have its call ended by it.
      Look l = look(files(t.tid), t.tid);
      if (l.what == Look::Gone) {
        t.gone = true;
        continue;
      }
      if (l.what == Look::Asleep) {
        hold_asleep(t, l);
        fresh.push_back(i);
        continue;
      }
      if (l.what == Look::Reported) reported = l.status;
    }
    ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
    to_wait.emplace_back(i, reported);
  }
  for (auto [i, reported] : to_wait) {
    LS_TRY(wait_stopped(threads_[i], reported));
    fresh.push_back(i);
  }
  return adopt_born(fresh);
}

// A SIGTRAP from an int3 at one of traps_ (rip just past it): rip goes back onto the site.
bool ThreadGroupStop::trapped_on_site(pid_t tid, arch::Registers& regs) const {
  if (traps_.empty() || !arch::read_registers(tid, regs)) return false;
  TargetAddr at(arch::pc(regs) - arch::kTrapPcAdvance);
  return std::any_of(traps_.begin(), traps_.end(), [&](const TargetRange& r) { return r.start == at; });
}

// A signal arrived before the interrupt. An int3 of ours: back onto the site, signal
// dropped. Any other: delivered now (see top); the interrupt then stops the thread
// before its handler runs.
Status ThreadGroupStop::pass_signal(Thread& t, int sig) {
  siginfo_t info{};
  arch::Registers regs;
  bool ours = sig == SIGTRAP && ptrace(PTRACE_GETSIGINFO, t.tid, nullptr, &info) == 0 && info.si_code == SI_KERNEL &&
              trapped_on_site(t.tid, regs);
  if (ours) {
    ++trapped_;
    arch::set_pc(regs, arch::pc(regs) - arch::kTrapPcAdvance);
    if (!arch::write_registers(t.tid, regs))
      return error("thread {}: cannot move it back onto the site it trapped on: {}", t.tid, std::strerror(errno));
  }
  ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);   // entering this stop dropped the pending one
  ptrace(PTRACE_CONT, t.tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(ours ? 0 : sig)));
  return {};
}

Status ThreadGroupStop::wait_stopped(Thread& t, int reported) {
  for (;;) {
    int status = reported;
    reported = -1;
    if (status == -1) {
      pid_t r = waitpid(t.tid, &status, __WALL);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == ECHILD) {
          t.gone = true;
          return {};
        }
        return error("thread {}: wait failed: {}", t.tid, std::strerror(errno));
      }
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      t.gone = true;
      return {};
    }
    if (!WIFSTOPPED(status)) continue;
    int event = status >> 16;
    int sig = WSTOPSIG(status);
    arch::Registers regs;
    if (event == PTRACE_EVENT_STOP) {
      // Our interrupt (or a group-stop) — unless an int3 of ours is still queued: let
      // it be dequeued into the signal-delivery-stop below, where it is dropped.
      if (!(trapped_on_site(t.tid, regs) && trap_queued(t.tid))) break;
      ptrace(PTRACE_CONT, t.tid, nullptr, nullptr);
      continue;
    }
    if (event == 0 && sig != (SIGTRAP | 0x80)) {
      LS_TRY(pass_signal(t, sig));
      continue;
    }
    if (event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK) {
      unsigned long child = 0;
      if (ptrace(PTRACE_GETEVENTMSG, t.tid, nullptr, &child) == 0 && child > 0) {
        born_.push_back(static_cast<pid_t>(child));
        seen_.insert(static_cast<pid_t>(child));
      }
    }
    // Entering any ptrace-stop drops a pending interrupt: ask again before going on.
    ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
    ptrace(PTRACE_CONT, t.tid, nullptr, nullptr);
  }
  if (!arch::read_registers(t.tid, t.regs)) {
    if (errno == ESRCH) {
      t.gone = true;
      return {};
    }
    return error("thread {}: cannot read registers: {}", t.tid, std::strerror(errno));
  }
  if (ended_by_interrupt(t.tid, t.regs)) {
    // A call our interrupt ended with EINTR: a thread woken in a call but not yet out of
    // it (it waited for a CPU), or one interrupted in it to be borrowed (when every thread
    // is in such a call, or it entered one after it was chosen). Re-issued on resume, as
    // the kernel restarts the calls that allow it; exact without a timeout, late by what
    // had elapsed with one (which is why sleepers are not interrupted at all, and the
    // thread borrowed is one asleep in a call the kernel restarts, when there is one).
    arch::reissue_syscall(t.regs, arch::syscall_number(t.regs));
    if (!arch::write_registers(t.tid, t.regs))
      return error("thread {}: cannot re-issue its system call: {}", t.tid, std::strerror(errno));
  }
  t.stopped = true;
  t.asleep = false;
  return {};
}

Status ThreadGroupStop::adopt_born(std::vector<size_t>& fresh) {
  while (!born_.empty()) {
    pid_t tid = born_.back();
    born_.pop_back();
    Thread t{tid};
    LS_TRY(wait_stopped(t));   // it starts with an interrupt's stop
    if (t.gone) continue;
    bool same_mm = syscall(SYS_kcmp, pid_, tid, KCMP_VM, 0, 0) == 0;
    if (same_mm) {
      fresh.push_back(threads_.size());
      threads_.push_back(t);
    } else {
      forked_.push_back(tid);
    }
  }
  return {};
}

Result<std::vector<size_t>> ThreadGroupStop::settle(bool stop_awake) {
  std::vector<size_t> fresh;
  std::vector<std::pair<size_t, int>> to_wait;
  for (size_t i = 0; i < threads_.size(); ++i) {
    Thread& t = threads_[i];
    uint64_t runs = 0;
    if (t.gone || !t.asleep || (files(t.tid).cpu_turns(runs) && runs == t.runs)) continue;
    // It ran. Asleep again: a new snapshot, with no interrupt to end its call.
    Look l = look(files(t.tid), t.tid);
    if (l.what == Look::Gone) {
      t.gone = true;
      continue;
    }
    if (l.what == Look::Running && !stop_awake) {
      t.asleep = false;   // for stop_running()
      continue;
    }
    fresh.push_back(i);
    if (l.what == Look::Asleep) {
      hold_asleep(t, l);
      continue;
    }
    ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
    to_wait.emplace_back(i, l.what == Look::Reported ? l.status : -1);
  }
  for (auto [i, reported] : to_wait) LS_TRY(wait_stopped(threads_[i], reported));
  LS_TRY(adopt_born(fresh));
  return fresh;
}

Result<std::vector<size_t>> ThreadGroupStop::run_for(std::chrono::microseconds interval,
                                                     const std::function<bool(const Thread&)>& stays) {
  for (auto& t : threads_) {
    if (t.gone || !t.stopped || stays(t)) continue;
    if (ptrace(PTRACE_CONT, t.tid, nullptr, nullptr) == 0) t.stopped = false;
    else if (errno == ESRCH) t.gone = true;
  }
  std::this_thread::sleep_for(interval);
  std::vector<size_t> fresh;
  LS_TRY(hold(0, fresh));
  return fresh;
}

Status ThreadGroupStop::stop_sleeper(size_t i) {
  Thread& t = threads_[i];
  if (t.gone || t.stopped) return {};
  ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
  return wait_stopped(t);
}

Status ThreadGroupStop::set_regs(Thread& t, const arch::Registers& regs) {
  if (!arch::write_registers(t.tid, regs))
    return error("thread {}: cannot set registers: {}", t.tid, std::strerror(errno));
  t.regs = regs;
  return {};
}

void ThreadGroupStop::resume() {
  if (resumed_) return;
  resumed_ = true;
  // Nothing of ours may be left waiting in a sleeper that woke: a trap, or a process
  // forked while the sites held int3s. (With no site ever armed, nothing is: the
  // tracer thread's end releases every sleeper, stopped by itself or not.)
  if (keep_sleepers_ && !traps_.empty()) (void)settle();
  // A thread seized but not yet stopped (we failed on the way) can only be detached
  // from a stop; with keep_sleepers_ it is left, as the sleepers are, to the end of the
  // tracer thread.
  for (auto& t : threads_)
    if (!t.gone && !t.stopped && !keep_sleepers_) {
      ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
      (void)wait_stopped(t);
    }
  for (auto& t : threads_)
    if (!t.gone && t.stopped)
      ptrace(PTRACE_DETACH, t.tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(t.pending_signal)));
  // A process forked while sites were being written holds a copy taken at some point of
  // it: it gets its parent's code as it is now.
  if (!forked_.empty()) {
    auto parent = Memory::open(pid_);
    for (pid_t child : forked_) {
      auto mem = Memory::open(child);
      for (const auto& r : traps_) {
        std::vector<uint8_t> bytes(r.size());
        if (parent && mem && parent->read(r.start, bytes).ok()) (void)mem->write(r.start, bytes);
      }
      ptrace(PTRACE_DETACH, child, nullptr, nullptr);
    }
  }
  timing_.resumed = std::chrono::steady_clock::now();
}

ThreadGroupStop::~ThreadGroupStop() { resume(); }

void on_tracer_thread(const std::function<void()>& fn) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1 << 20);   // locked and touched in a guardian child: keep it small
  auto run = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  pthread_t thread;
  if (pthread_create(&thread, &attr, run, const_cast<std::function<void()>*>(&fn)) == 0) pthread_join(thread, nullptr);
  else fn();   // no thread to spare: sleepers then stay seized until this process ends
  pthread_attr_destroy(&attr);
}

// --- RemoteSyscall --------------------------------------------------------------------

RemoteSyscall::RemoteSyscall(ThreadGroupStop& group, Thread& thread, TargetAddr gadget, SeccompFilters filters)
    : group_(group), thread_(thread), gadget_(gadget), filters_(std::move(filters)), saved_(thread.regs) {}

arch::Registers resumable(const arch::Registers& saved) {
  arch::Registers regs = saved;
  int64_t result = arch::syscall_result(regs);
  if (arch::syscall_number(regs) >= 0 && (result == kERestartSys || result == kERestartNoIntr ||
                                          result == kERestartNoHand || result == kERestartRestartBlock)) {
    // Restart by hand, exactly as the kernel would have with no handler to run.
    arch::reissue_syscall(regs, result == kERestartRestartBlock ? SYS_restart_syscall : arch::syscall_number(regs));
    arch::set_syscall_number(regs, -1);
  }
  return regs;
}

RemoteSyscall::~RemoteSyscall() {
  if (thread_.gone) return;
  (void)group_.set_regs(thread_, resumable(saved_));
  thread_.regs = saved_;   // callers see the registers as the thread was stopped
}

Result<int64_t> RemoteSyscall::call(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                    uint64_t a6) {
  return call(PlannedCall{nr, {a1, a2, a3, a4, a5, a6}});
}

Result<int64_t> RemoteSyscall::call(const PlannedCall& c) {
  if (SeccompVerdict v = filters_.evaluate(c, gadget_); !v.runs())
    return Status::error(fmt::format("thread {}: {} {}; not attempted", thread_.tid, c.describe(), v.describe()),
                         Exit::Unsafe);
  arch::Registers regs = saved_;
  arch::load_syscall(regs, gadget_.value(), c.nr, c.args);
  arch::set_sp(regs, (arch::sp(saved_) - arch::kRedZone - scratch_used_ - 64) & ~uint64_t{15});
  if (!arch::write_registers(thread_.tid, regs))
    return error("thread {}: cannot set registers for a syscall: {}", thread_.tid, std::strerror(errno));
  ++calls_made_;
  // One step over the `syscall` instruction: the kernel reports the step once the call
  // has returned, one stop where PTRACE_SYSCALL makes two (entry and exit). A signal
  // arriving first stops the thread before the instruction; it is kept for resume().
  arch::Registers after;
  for (;;) {
    if (ptrace(PTRACE_SINGLESTEP, thread_.tid, nullptr, nullptr) != 0)
      return error("thread {}: cannot run a syscall: {}", thread_.tid, std::strerror(errno));
    int status = 0;
    pid_t r;
    do r = waitpid(thread_.tid, &status, __WALL);
    while (r < 0 && errno == EINTR);
    if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
      thread_.gone = true;
      return error("thread {}: exited during an injected syscall", thread_.tid);
    }
    if (!WIFSTOPPED(status)) continue;
    if (!arch::read_registers(thread_.tid, after))
      return error("thread {}: cannot read syscall result: {}", thread_.tid, std::strerror(errno));
    const uint64_t returned = gadget_.value() + arch::kSyscallInstructionSize;
    if (WSTOPSIG(status) == SIGTRAP && arch::pc(after) == returned) break;
    if ((status >> 16) == 0 && WSTOPSIG(status) != SIGTRAP) thread_.pending_signal = WSTOPSIG(status);
    if (arch::pc(after) != gadget_.value() && arch::pc(after) != returned)
      return error("thread {}: left the injected syscall (pc {:#x})", thread_.tid, arch::pc(after));
  }
  return arch::syscall_result(after);
}

TargetAddr RemoteSyscall::next_scratch(size_t size) const {
  uint64_t used = (scratch_used_ + size + 15) & ~uint64_t{15};
  return TargetAddr((arch::sp(saved_) - arch::kRedZone - used) & ~uint64_t{15});
}

Result<TargetAddr> RemoteSyscall::push_bytes(const Memory& mem, std::span<const uint8_t> bytes) {
  TargetAddr at = next_scratch(bytes.size());
  scratch_used_ = (scratch_used_ + bytes.size() + 15) & ~uint64_t{15};
  LS_TRY(mem.write(at, bytes));
  return at;
}

bool waits_for_signal(const arch::Registers& regs) {
  const int64_t nr = arch::syscall_number(regs);
  return (nr == SYS_pause || nr == SYS_rt_sigsuspend) && arch::syscall_result(regs) == kERestartNoHand;
}

Result<TargetAddr> find_syscall_gadget(pid_t pid, const Memory& mem) {
  auto maps = read_maps(pid);
  if (!maps) return maps.status();
  auto search = [&](const Mapping& m) -> std::optional<TargetAddr> {
    std::vector<uint8_t> buf(std::min<uint64_t>(m.range.size(), 4 << 20));
    if (!mem.read(m.range.start, buf).ok()) return std::nullopt;
    for (size_t i = 0; i + 1 < buf.size(); ++i)
      if (buf[i] == 0x0f && buf[i + 1] == 0x05) return m.range.start + static_cast<int64_t>(i);
    return std::nullopt;
  };
  for (const auto& m : *maps)
    if (m.path == "[vdso]")
      if (auto a = search(m)) return *a;
  for (const auto& m : *maps)
    if (m.exec && m.read && m.path.find("libc") != std::string::npos)
      if (auto a = search(m)) return *a;
  for (const auto& m : *maps)
    if (m.exec && m.read)
      if (auto a = search(m)) return *a;
  return error("process {}: no syscall instruction found in its executable mappings", pid);
}

}  // namespace ls::proc
