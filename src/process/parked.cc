#include "process/parked.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "process/maps.h"
#include "process/scheduling.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace ls::proc {

namespace {

constexpr uint64_t kPage = 4096;
// CLONE_PTRACE: the new thread is traced by us like its creator (seized: it starts in a
// PTRACE_EVENT_STOP), without the creator stopping to report the clone.
constexpr uint64_t kThreadFlags =
    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_PTRACE;

PlannedCall clone_call() { return {SYS_clone, {kThreadFlags, 0, 0, 0, 0, 0}}; }
PlannedCall exit_call() { return {SYS_exit, {0, 0, 0, 0, 0, 0}}; }
PlannedCall scratch_map(uint64_t at, uint64_t size) {
  return {SYS_mmap, {at, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                     static_cast<uint64_t>(-1), 0}};
}
PlannedCall scratch_unmap(uint64_t at, uint64_t size) { return {SYS_munmap, {at, size}}; }

// Waits for `tid`'s next stop; false if it exited or was killed instead.
bool wait_stop(pid_t tid, int& status) {
  pid_t r;
  do r = waitpid(tid, &status, __WALL);
  while (r < 0 && errno == EINTR);
  return r == tid && WIFSTOPPED(status);
}

// A free page-aligned range of `size` bytes in no mapping and in no range of `avoid`,
// with a free page on either side (nothing of the program's grows into it): the lowest
// above the program's first mapping.
std::optional<uint64_t> free_range(const std::vector<Mapping>& maps, std::span<const TargetRange> avoid,
                                   uint64_t size) {
  std::vector<TargetRange> taken;
  for (const auto& m : maps) taken.push_back(m.range);
  taken.insert(taken.end(), avoid.begin(), avoid.end());
  std::sort(taken.begin(), taken.end(), [](const TargetRange& a, const TargetRange& b) { return a.start < b.start; });
  uint64_t from = 0;
  for (const auto& r : taken) {
    if (from && r.start.value() >= from + size + kPage) return from;
    from = std::max(from, ((r.end.value() + kPage - 1) & ~(kPage - 1)) + kPage);
  }
  return std::nullopt;
}

}  // namespace

ParkedThread::ParkedThread(ThreadGroupStop& group, pid_t tid, TargetAddr gadget, SeccompFilters filters)
    : group_(group), thread_{tid}, gadget_(gadget), filters_(std::move(filters)),
      born_(std::chrono::steady_clock::now()) {
  thread_.stopped = true;
}

Result<std::unique_ptr<ParkedThread>> ParkedThread::create(ThreadGroupStop& group, RemoteSyscall& borrowed,
                                                           std::string& why) {
  const PlannedCall mine[] = {clone_call(), exit_call(), scratch_map(0, kPage), scratch_unmap(0, kPage)};
  if (std::string refused = borrowed.filters().first_refused(mine, borrowed.gadget()); !refused.empty()) {
    why = refused;
    return std::unique_ptr<ParkedThread>();
  }
  auto tid = borrowed.call(clone_call());
  if (!tid) return tid.status();
  if (*tid <= 0) {   // EAGAIN: at its thread limit
    why = fmt::format("{} failed: {}", clone_call().describe(), std::strerror(static_cast<int>(-*tid)));
    return std::unique_ptr<ParkedThread>();
  }
  return std::unique_ptr<ParkedThread>(
      new ParkedThread(group, static_cast<pid_t>(*tid), borrowed.gadget(), borrowed.filters()));
}

Status ParkedThread::take_over(const cpu_set_t& cpus) {
  taken_ = true;
  int status = 0;
  arch::Registers regs;
  if (!wait_stop(tid(), status) || !arch::read_registers(tid(), regs)) {
    ended_ = true;   // gone, or out of our hands
    return error("process {}: the thread it created for livesplice cannot be driven", group_.pid());
  }
  arch::load_syscall(regs, gadget_.value(), SYS_exit, {0, 0, 0, 0, 0, 0});
  LS_TRY(park(regs));
  // Every signal blocked before it runs anything (SIGKILL and SIGSTOP cannot be), but
  // SIGTRAP: each call is a single step, and a step's trap in a thread that blocks
  // SIGTRAP resets the whole process's SIGTRAP handler to the default.
  uint64_t all = ~(uint64_t{1} << (SIGTRAP - 1));
  if (ptrace(PTRACE_SETSIGMASK, tid(), sizeof all, &all) != 0)
    return error("thread {}: cannot block its signals: {}", tid(), std::strerror(errno));
  raise_own_thread(tid(), cpus);
  sc_ = std::make_unique<RemoteSyscall>(group_, thread_, gadget_, filters_);
  return {};
}

Status ParkedThread::park(const arch::Registers& regs) {
  parked_ = regs;
  return group_.set_regs(thread_, regs);
}

Status ParkedThread::take_scratch(size_t bytes, std::span<const TargetRange> avoid) {
  auto maps = read_maps(group_.pid());
  if (!maps) return maps.status();
  // Below the stack pointer: push_bytes' red zone and alignment, then the bytes.
  const uint64_t size = (bytes + 256 + kPage - 1) & ~(kPage - 1);
  auto at = free_range(*maps, avoid, size);
  if (!at) return error("process {}: no free page for the scratch memory of livesplice's thread", group_.pid());
  auto rc = call(scratch_map(*at, size));
  if (!rc) return rc.status();
  if (static_cast<uint64_t>(*rc) != *at) {
    if (*rc >= 0 || *rc < -4095) (void)call(scratch_unmap(static_cast<uint64_t>(*rc), size));
    return error("process {}: cannot map scratch memory at {:#x}: {}", group_.pid(), *at,
                 *rc < 0 && *rc > -4096 ? std::strerror(static_cast<int>(-*rc)) : "placed elsewhere");
  }
  scratch_ = TargetRange{TargetAddr(*at), TargetAddr(*at + size)};
  // Its calls from the top of the page: RemoteSyscall writes below the stack pointer.
  sc_.reset();
  arch::Registers regs = parked_;
  arch::set_sp(regs, *at + size);
  LS_TRY(park(regs));
  sc_ = std::make_unique<RemoteSyscall>(group_, thread_, gadget_, filters_);
  return {};
}

Result<int64_t> ParkedThread::call(const PlannedCall& c) {
  if (ended_) return error("thread {}: already ended", thread_.tid);
  ++calls_;
  auto rc = sc_->call(c);
  if (!thread_.gone) LS_TRY(park(parked_));
  return rc;
}

Status ParkedThread::end() {
  if (!ended_ && !taken_) {   // never taken over: parked first, to exit
    cpu_set_t any;
    CPU_ZERO(&any);
    (void)take_over(any);
  }
  if (ended_) return {};
  Status first;
  if (scratch_) {
    auto rc = call(scratch_unmap(scratch_->start.value(), scratch_->size()));
    if (!rc) first = rc.status();
    scratch_.reset();
  }
  ended_ = true;
  sc_.reset();
  if (thread_.gone) return first;
  // On its exit(0): run it, and collect what the kernel keeps of it for its tracer.
  if (Status s = park(parked_); !s.ok() && first.ok()) first = s;
  ++calls_;
  if (ptrace(PTRACE_CONT, thread_.tid, nullptr, nullptr) != 0 && first.ok())
    first = error("thread {}: cannot let it exit: {}", thread_.tid, std::strerror(errno));
  for (int status = 0; wait_stop(thread_.tid, status);)
    ptrace(PTRACE_CONT, thread_.tid, nullptr, nullptr);   // a stop on its way out: on
  thread_.gone = true;
  died_ = std::chrono::steady_clock::now();
  return first;
}

double ParkedThread::lived_us() const {
  auto until = ended_ ? died_ : std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::micro>(until - born_).count();
}

}  // namespace ls::proc
