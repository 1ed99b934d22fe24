#include "process/ptrace.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdint>
#include <set>

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

Result<std::unique_ptr<ThreadGroupStop>> ThreadGroupStop::stop(pid_t pid) { return stop_some(pid, SIZE_MAX); }

Result<std::unique_ptr<ThreadGroupStop>> ThreadGroupStop::stop_one(pid_t pid) { return stop_some(pid, 1); }

Result<std::unique_ptr<ThreadGroupStop>> ThreadGroupStop::stop_some(pid_t pid, size_t limit) {
  std::unique_ptr<ThreadGroupStop> g(new ThreadGroupStop(pid));
  std::set<pid_t> seen;
  ThreadCount count(pid);

  // 1. Before the pause: seize (attach without stopping) every thread, re-reading the
  //    task list until it shows none we have not seized.
  for (int round = 0; round < 64 && g->threads_.size() < limit; ++round) {
    auto fresh = g->seize_fresh(seen, limit);
    if (!fresh) return fresh.status();
    if (*fresh == 0) break;
  }
  if (g->threads_.empty()) return error("process {}: no threads to stop (has it exited?)", pid);

  // 2. The pause starts: interrupt all, then wait for all.
  g->timing_.first_stop = std::chrono::steady_clock::now();
  LS_TRY(g->interrupt_and_wait(0));

  // 3. A thread can still have escaped: its creator was inside clone() when it was
  //    seized (too late for the child to be traced along, too early for it to be in the
  //    list), or a listing skipped it (/proc's task list is read by position, and threads
  //    exiting meanwhile shift the positions). Stopped threads create no more threads and
  //    do not exit, so the kernel's own count settles it: while it exceeds the threads we
  //    hold (or a creator stopped right at clone's exit), read the list again.
  for (size_t checked = 0, round = 0; round < 64 && g->threads_.size() < limit; ++round) {
    bool in_clone = false;
    for (size_t i = checked; i < g->threads_.size(); ++i) {
      const Thread& t = g->threads_[i];
      in_clone |= !t.gone && (t.regs.orig_rax == SYS_clone || t.regs.orig_rax == SYS_clone3);
    }
    size_t held = std::count_if(g->threads_.begin(), g->threads_.end(), [](const Thread& t) { return !t.gone; });
    if (!in_clone && count.now() <= held) break;
    checked = g->threads_.size();
    auto fresh = g->seize_fresh(seen, limit);
    if (!fresh) return fresh.status();
    if (*fresh == 0) {
      if (round >= 8) break;   // e.g. an exited leader still counted: nothing left to find
      continue;
    }
    LS_TRY(g->interrupt_and_wait(checked));
  }

  g->threads_.erase(std::remove_if(g->threads_.begin(), g->threads_.end(), [](const Thread& t) { return t.gone; }),
                    g->threads_.end());
  if (g->threads_.empty()) return error("process {}: exited while being stopped", pid);
  g->timing_.all_stopped = std::chrono::steady_clock::now();
  return g;
}

Result<size_t> ThreadGroupStop::seize_fresh(std::set<pid_t>& seen, size_t limit) {
  size_t added = 0;
  for (pid_t tid : list_tasks(pid_)) {
    if (threads_.size() >= limit) break;
    if (!seen.insert(tid).second) continue;
    if (ptrace(PTRACE_SEIZE, tid, nullptr, PTRACE_O_TRACESYSGOOD) == 0) {
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

Status ThreadGroupStop::interrupt_and_wait(size_t from) {
  for (size_t i = from; i < threads_.size(); ++i) ptrace(PTRACE_INTERRUPT, threads_[i].tid, nullptr, nullptr);
  for (size_t i = from; i < threads_.size(); ++i) LS_TRY(wait_stopped(threads_[i]));
  return {};
}

Status ThreadGroupStop::wait_stopped(Thread& t) {
  for (;;) {
    int status = 0;
    pid_t r = waitpid(t.tid, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) {
        t.gone = true;
        return {};
      }
      return error("thread {}: wait failed: {}", t.tid, std::strerror(errno));
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      t.gone = true;
      return {};
    }
    if (!WIFSTOPPED(status)) continue;
    int event = status >> 16;
    int sig = WSTOPSIG(status);
    if (event == PTRACE_EVENT_STOP) break;   // our interrupt, or a group-stop
    if (event == 0 && sig != (SIGTRAP | 0x80)) {
      // A signal arrived first: keep it for resume(), let the pending interrupt stop us.
      t.pending_signal = sig;
      ptrace(PTRACE_CONT, t.tid, nullptr, nullptr);
      continue;
    }
    ptrace(PTRACE_CONT, t.tid, nullptr, nullptr);
  }
  if (ptrace(PTRACE_GETREGS, t.tid, nullptr, &t.regs) != 0) {
    if (errno == ESRCH) {
      t.gone = true;
      return {};
    }
    return error("thread {}: cannot read registers: {}", t.tid, std::strerror(errno));
  }
  t.stopped = true;
  return {};
}

Status ThreadGroupStop::set_regs(Thread& t, const user_regs_struct& regs) {
  if (ptrace(PTRACE_SETREGS, t.tid, nullptr, &regs) != 0)
    return error("thread {}: cannot set registers: {}", t.tid, std::strerror(errno));
  t.regs = regs;
  return {};
}

void ThreadGroupStop::resume() {
  if (resumed_) return;
  resumed_ = true;
  // A thread seized but not yet stopped (we failed on the way) can only be detached
  // from a stop.
  for (auto& t : threads_)
    if (!t.gone && !t.stopped) {
      ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
      (void)wait_stopped(t);
    }
  for (auto& t : threads_)
    if (!t.gone) ptrace(PTRACE_DETACH, t.tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(t.pending_signal)));
  timing_.resumed = std::chrono::steady_clock::now();
}

ThreadGroupStop::~ThreadGroupStop() { resume(); }

// --- RemoteSyscall --------------------------------------------------------------------

RemoteSyscall::RemoteSyscall(ThreadGroupStop& group, Thread& thread, TargetAddr gadget)
    : group_(group), thread_(thread), gadget_(gadget), saved_(thread.regs) {}

RemoteSyscall::~RemoteSyscall() {
  if (thread_.gone) return;
  user_regs_struct regs = saved_;
  int64_t rax = static_cast<int64_t>(regs.rax);
  if (static_cast<int64_t>(regs.orig_rax) >= 0 &&
      (rax == kERestartSys || rax == kERestartNoIntr || rax == kERestartNoHand || rax == kERestartRestartBlock)) {
    // The borrowed syscall consumed the kernel's restart bookkeeping: restart by hand,
    // exactly as the kernel would have with no handler to run.
    regs.rax = rax == kERestartRestartBlock ? SYS_restart_syscall : regs.orig_rax;
    regs.rip -= 2;
    regs.orig_rax = static_cast<uint64_t>(-1);
  }
  (void)group_.set_regs(thread_, regs);
  thread_.regs = saved_;   // callers see the registers as the thread was stopped
}

Result<int64_t> RemoteSyscall::call(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                    uint64_t a6) {
  user_regs_struct regs = saved_;
  regs.rip = gadget_.value();
  regs.rax = nr;
  regs.orig_rax = static_cast<uint64_t>(-1);
  regs.rdi = a1;
  regs.rsi = a2;
  regs.rdx = a3;
  regs.r10 = a4;
  regs.r8 = a5;
  regs.r9 = a6;
  regs.rsp = (saved_.rsp - 128 - scratch_used_ - 64) & ~uint64_t{15};
  if (ptrace(PTRACE_SETREGS, thread_.tid, nullptr, &regs) != 0)
    return error("thread {}: cannot set registers for a syscall: {}", thread_.tid, std::strerror(errno));
  // Two syscall stops: entry, then exit.
  for (int stops = 0; stops < 2;) {
    if (ptrace(PTRACE_SYSCALL, thread_.tid, nullptr, nullptr) != 0)
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
    int sig = WSTOPSIG(status);
    if (sig == (SIGTRAP | 0x80)) {
      ++stops;
    } else if ((status >> 16) == 0) {
      thread_.pending_signal = sig;   // deliver later; keep driving the syscall
    }
  }
  user_regs_struct after;
  if (ptrace(PTRACE_GETREGS, thread_.tid, nullptr, &after) != 0)
    return error("thread {}: cannot read syscall result: {}", thread_.tid, std::strerror(errno));
  return static_cast<int64_t>(after.rax);
}

Result<TargetAddr> RemoteSyscall::push_bytes(const Memory& mem, std::span<const uint8_t> bytes) {
  scratch_used_ = (scratch_used_ + bytes.size() + 15) & ~uint64_t{15};
  TargetAddr at((saved_.rsp - 128 - scratch_used_) & ~uint64_t{15});
  LS_TRY(mem.write(at, bytes));
  return at;
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
