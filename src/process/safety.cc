#include "process/safety.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace ls::proc {

namespace {

constexpr uint64_t kLead = 16;                 // code bytes kept before each range
constexpr uint64_t kMaxStack = 8 << 20;        // never read more than this of one stack
constexpr uint64_t kUnknownStack = 64 << 10;

// Does the code before `ret` (a candidate return address) end with a call instruction?
bool preceded_by_call(const Guarded& g, TargetAddr ret) {
  int64_t at = (ret - g.range.start) + static_cast<int64_t>(kLead);   // index in g.code
  auto byte = [&](int64_t back) -> int {
    int64_t i = at - back;
    return i >= 0 && i < static_cast<int64_t>(g.code.size()) ? g.code[i] : -1;
  };
  if (byte(5) == 0xe8) return true;                                   // call rel32
  for (int len : {2, 3, 4, 6, 7}) {                                   // call *r/m (ff /2), maybe REX
    int b0 = byte(len), b1 = byte(len - 1);
    if (b0 == 0xff && b1 >= 0 && ((b1 >> 3) & 7) == 2) return true;
    if (b0 >= 0x40 && b0 <= 0x4f && b1 == 0xff) {
      int m = byte(len - 2);
      if (m >= 0 && ((m >> 3) & 7) == 2) return true;
    }
  }
  return false;
}

// Field `field` (1-based, as proc(5) numbers them; 3 or later) of /proc/PID/stat, or -1.
int64_t stat_field(pid_t pid, int field) {
  char path[64], buf[1024];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (!f) return -1;
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');   // the end of field 2 (comm), which may hold spaces
  if (!p) return -1;
  int at = 2;
  for (++p; *p && at < field; ++p)
    if (*p == ' ') ++at;
  return at == field ? std::strtoll(p, nullptr, 10) : -1;
}

TargetAddr start_stack(pid_t pid) {
  int64_t v = stat_field(pid, 28);
  return TargetAddr(v > 0 ? static_cast<uint64_t>(v) : 0);
}

// For the length of one attempt the stopping process runs at the lowest real-time
// priority: a thread it resumes (or whose stop wakes it) cannot then preempt it, which
// on a busy machine otherwise adds a scheduler turn per thread to the pause. Without
// the privilege, or when livesplice was started under a policy other than the default
// (chrt), the attempt runs as it is.
class RealtimeScope {
 public:
  RealtimeScope() {
    policy_ = sched_getscheduler(0);
    if (policy_ < 0 || sched_getparam(0, &saved_) != 0) return;
    sched_param rt{};
    rt.sched_priority = 1;
    raised_ = policy_ == SCHED_OTHER && sched_setscheduler(0, SCHED_FIFO, &rt) == 0;
  }
  ~RealtimeScope() { end(); }
  RealtimeScope(const RealtimeScope&) = delete;
  RealtimeScope& operator=(const RealtimeScope&) = delete;
  void end() {
    if (raised_) (void)sched_setscheduler(0, policy_, &saved_);
    raised_ = false;
  }

 private:
  int policy_ = -1;
  sched_param saved_{};
  bool raised_ = false;
};

// For the length of one attempt the stopping process runs on the CPU the target last
// ran on. Waking a thread on another CPU is an inter-processor interrupt, and in a
// virtual machine whose other vCPU is halted, waiting for that vCPU to be scheduled
// again; on the same CPU the wake-up is local, and the stopped thread's report back is
// too. Restored after the attempt; without a CPU to read, the attempt runs as it is.
class CpuScope {
 public:
  explicit CpuScope(pid_t pid) {
    int cpu = last_cpu(pid);
    if (cpu < 0 || sched_getaffinity(0, sizeof saved_, &saved_) != 0 || !CPU_ISSET(cpu, &saved_)) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    moved_ = sched_setaffinity(0, sizeof one, &one) == 0;
  }
  ~CpuScope() { end(); }
  CpuScope(const CpuScope&) = delete;
  CpuScope& operator=(const CpuScope&) = delete;
  void end() {
    if (moved_) (void)sched_setaffinity(0, sizeof saved_, &saved_);
    moved_ = false;
  }

 private:
  // Field 39 of /proc/PID/stat: the CPU the process's main thread last ran on.
  static int last_cpu(pid_t pid) { return static_cast<int>(stat_field(pid, 39)); }
  cpu_set_t saved_{};
  bool moved_ = false;
};

// A process of ours that only waits: something to stop, check and resume once, with the
// very calls of a real attempt, before the target is stopped (see rehearse). Spawned
// (vfork and exec), not forked: a fork would make every page of ours copy-on-write
// again, and the pause would then take a write fault on each page it writes.
class StandIn {
 public:
  StandIn() {
    char sleep_path[] = "/bin/sleep", forever[] = "infinity";
    char* argv[] = {sleep_path, forever, nullptr};
    char* envp[] = {nullptr};
    if (posix_spawn(&pid_, sleep_path, nullptr, nullptr, argv, envp) != 0) pid_ = -1;
  }
  ~StandIn() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  StandIn(const StandIn&) = delete;
  StandIn& operator=(const StandIn&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// The first stop a process makes is several times slower than the next: every page of
// code and data the stop path touches is touched for the first time in this (freshly
// forked) process, and on a virtual machine each first touch can exit to the
// hypervisor. Measured on a 2-vCPU guest, stopping a 2-thread target from a fresh
// process took 140-300 us, and 55-85 us after one stop of a stand-in. So the whole
// stop, check and resume runs once on a stand-in first, outside the pause; nothing of
// the target is touched. Best effort: any failure here only costs the warm-up.
void rehearse(pid_t target, const std::vector<Guarded>& guarded, StackScratch& scratch) {
  StandIn stand_in;
  if (stand_in.pid() <= 0) return;
  on_tracer_thread([&] {
    CpuScope cpu(target);
    RealtimeScope realtime;
    auto stop = ThreadGroupStop::seize_all(stand_in.pid());
    if (!stop) return;
    auto maps = read_maps(stand_in.pid());
    (void)(*stop)->stop_running();
    if (maps)
      (void)check_threads(stand_in.pid(), *maps, (*stop)->threads(), guarded, start_stack(stand_in.pid()), scratch);
    (void)(*stop)->settle();
    (*stop)->resume();
  });
}

// The stack pointer a thread blocked in a system call will return to user space with
// (the next-to-last field of /proc/PID/task/TID/syscall), or null: a thread running
// user code reports "running", and then nothing is known before it is stopped.
TargetAddr blocked_sp(pid_t pid, const char* tid) {
  char path[96], buf[256];
  std::snprintf(path, sizeof path, "/proc/%d/task/%s/syscall", static_cast<int>(pid), tid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return TargetAddr();
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return TargetAddr();
  buf[n] = 0;
  char* fields[10];
  int count = 0;
  for (char* save = nullptr, *f = strtok_r(buf, " \n", &save); f && count < 10; f = strtok_r(nullptr, " \n", &save))
    fields[count++] = f;
  return count == 9 ? TargetAddr(std::strtoull(fields[7], nullptr, 16)) : TargetAddr();
}

// Reading a page of the target for the first time from a (freshly forked) process
// costs several times a repeated read on a virtual machine: with 256 threads, the first
// check of their stacks took 2.8 ms and a second one 0.25 ms. So, before the stop, what
// the pause will touch is read once: the bytes the splice writes (or undo restores), and
// the stacks of the threads blocked in system calls (most threads of a server) the way
// the check will read them, from the stack pointer they will return with to the end of
// the mapping. Nothing depends on what is read.
void warm_target(pid_t pid, const std::vector<Mapping>& maps, TargetAddr start_stack, const std::vector<Guarded>& guarded,
                 StackScratch& scratch) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/task", static_cast<int>(pid));
  DIR* dir = opendir(path);
  if (!dir) return;
  scratch.local.clear();
  scratch.remote.clear();
  size_t used = 0;
  auto flush = [&] {
    if (!scratch.local.empty())
      (void)process_vm_readv(pid, scratch.local.data(), scratch.local.size(), scratch.remote.data(),
                             scratch.remote.size(), 0);
    scratch.local.clear();
    scratch.remote.clear();
    used = 0;
  };
  // The splice reads and writes whole pages' worth of sites at once (trampoline.h):
  // per page, from its first site to the end of its last.
  std::map<uint64_t, TargetRange> pages;
  for (const auto& g : guarded) {
    if (g.patched.size() == 0) continue;
    auto [it, fresh] = pages.try_emplace(g.patched.start.value() >> 12, g.patched);
    if (!fresh)
      it->second = {std::min(it->second.start, g.patched.start), std::max(it->second.end, g.patched.end)};
  }
  for (const auto& [page, r] : pages)
    if (used + r.size() <= scratch.buffer.size()) {
      scratch.local.push_back({scratch.buffer.data() + used, r.size()});
      scratch.remote.push_back({reinterpret_cast<void*>(r.start.value()), r.size()});
      used += r.size();
      if (scratch.local.size() == StackScratch::kMaxPieces) flush();
    }
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    TargetAddr sp = blocked_sp(pid, e->d_name);
    const Mapping* m = sp.value() ? mapping_at(maps, sp) : nullptr;
    if (!m) continue;
    TargetAddr end = m->range.end;
    if (m->range.contains(start_stack) && start_stack > sp) end = start_stack;
    uint64_t take = std::min<uint64_t>(end - sp, 64 << 10);
    if (used + take > scratch.buffer.size() || scratch.local.size() == StackScratch::kMaxPieces) flush();
    if (take > scratch.buffer.size()) continue;
    scratch.local.push_back({scratch.buffer.data() + used, take});
    scratch.remote.push_back({reinterpret_cast<void*>(sp.value()), take});
    used += take;
  }
  closedir(dir);
  flush();
}

}  // namespace

std::string Blocker::describe() const {
  return executing ? fmt::format("thread {} is executing {} (pc {})", tid, label, address)
                   : fmt::format("thread {} will return into {} (return address {} on its stack)", tid, label, address);
}

Status load_guarded_code(const Memory& mem, std::vector<Guarded>& guarded) {
  for (auto& g : guarded) {
    g.code.assign(g.range.size() + kLead, 0);
    TargetAddr from = g.range.start - static_cast<int64_t>(kLead);
    if (!mem.read(from, g.code).ok()) {
      // The lead may cross into an unmapped page; the range itself must be readable.
      std::fill(g.code.begin(), g.code.end(), 0);
      LS_TRY(mem.read(g.range.start, std::span(g.code).subspan(kLead)));
    }
  }
  return {};
}

Result<std::optional<Blocker>> check_threads(pid_t pid, const std::vector<Mapping>& maps,
                                             const std::vector<Thread>& threads,
                                             const std::vector<Guarded>& guarded, TargetAddr start_stack,
                                             StackScratch& scratch) {
  if (guarded.empty()) return std::optional<Blocker>();
  TargetAddr lo = guarded.front().range.start, hi = guarded.front().range.end;
  for (const auto& g : guarded) {
    lo = std::min(lo, g.range.start);
    hi = std::max(hi, g.range.end);
  }
  auto find = [&](TargetAddr a) -> const Guarded* {
    if (a < lo || a > hi) return nullptr;
    for (const auto& g : guarded)
      if (a >= g.range.start && a <= g.range.end) return &g;
    return nullptr;
  };

  // PCs first: cheapest, and the most common blocker.
  for (const auto& t : threads) {
    if (t.gone) continue;
    TargetAddr pc(t.regs.rip);
    const Guarded* g = find(pc);
    // At the entry (or just past endbr64, at the jump site) nothing that matters has
    // run yet: the thread will take the jump.
    if (g && pc < g->range.end && pc != g->range.start && pc != g->patched.start)
      return std::optional<Blocker>(Blocker{t.tid, g->label, pc, true});
  }

  // Every live stack, batched into as few system calls as the scratch buffer allows.
  size_t used = 0;
  scratch.pieces.clear();
  scratch.bytes_read = 0;
  auto scan = [&]() -> std::optional<Blocker> {
    if (scratch.pieces.empty()) return std::nullopt;
    scratch.local.clear();
    scratch.remote.clear();
    size_t expected = 0;
    for (const auto& p : scratch.pieces) {
      scratch.local.push_back({scratch.buffer.data() + p.offset, p.length});
      scratch.remote.push_back({reinterpret_cast<void*>(p.at.value()), p.length});
      expected += p.length;
    }
    scratch.bytes_read += expected;
    ssize_t got = process_vm_readv(pid, scratch.local.data(), scratch.local.size(), scratch.remote.data(),
                                   scratch.remote.size(), 0);
    for (auto& p : scratch.pieces) {
      if (got != static_cast<ssize_t>(expected)) {
        // Slow path: one read per piece, tolerating a stack that ends early (a guessed
        // length running past its mapping).
        iovec l{scratch.buffer.data() + p.offset, p.length}, r{reinterpret_cast<void*>(p.at.value()), p.length};
        while (p.length >= 8 && process_vm_readv(pid, &l, 1, &r, 1, 0) != static_cast<ssize_t>(p.length))
          l.iov_len = r.iov_len = p.length = p.length / 2 & ~size_t{7};
      }
      const uint8_t* bytes = scratch.buffer.data() + p.offset;
      for (size_t off = 0; off + 8 <= p.length; off += 8) {
        uint64_t w;
        std::memcpy(&w, bytes + off, 8);
        TargetAddr a(w);
        if (a <= lo || a > hi) continue;
        const Guarded* g = find(a);
        if (!g || a == g->range.start) continue;
        bool into_patch = g->patched.contains(a) && a != g->patched.start;
        if (into_patch || preceded_by_call(*g, a)) return Blocker{threads[p.thread].tid, g->label, a, false};
      }
    }
    scratch.pieces.clear();
    used = 0;
    return std::nullopt;
  };
  for (size_t i = 0; i < threads.size(); ++i) {
    if (threads[i].gone) continue;
    TargetAddr at(threads[i].regs.rsp & ~uint64_t{7});
    const Mapping* m = mapping_at(maps, at);
    uint64_t left = m ? std::min<uint64_t>(m->range.end - at, kMaxStack) : kUnknownStack;
    // A thread library keeps each thread's control block (and static TLS below it) at
    // the top of the thread's own stack mapping, above every frame; fs_base points at
    // it. Nothing above it can be a return address, and with hundreds of threads
    // not reading it is a good part of the check.
    TargetAddr tcb(threads[i].regs.fs_base);
    if (m && m->range.contains(tcb) && tcb > at) left = std::min<uint64_t>(left, tcb - at);
    if (m && m->range.contains(start_stack) && start_stack > at) left = std::min<uint64_t>(left, start_stack - at);
    while (left >= 8) {
      if (used == scratch.buffer.size() || scratch.pieces.size() == StackScratch::kMaxPieces)
        if (auto b = scan()) return b;
      uint64_t take = std::min<uint64_t>(left, scratch.buffer.size() - used) & ~uint64_t{7};
      scratch.pieces.push_back({i, at, used, take});
      used += take;
      at = at + static_cast<int64_t>(take);
      left -= take;
    }
  }
  if (auto b = scan()) return b;
  return std::optional<Blocker>();
}

StackScratch::StackScratch() : buffer(kBytes) {
  // Touch every page now (vector's value-initialisation writes each byte).
  pieces.reserve(kMaxPieces);
  local.reserve(kMaxPieces);
  remote.reserve(kMaxPieces);
}

namespace {

// One attempt, on the tracer thread: seize, check the sleepers, stop the running
// threads (the pause starts) and check them, arm, settle and check what ran, finish.
struct Attempt {
  std::optional<Blocker> blocker;   // the attempt changed nothing
  double pause_us = 0;
  std::string note;                 // where the pause went
};

Result<Attempt> attempt(pid_t pid, const Memory& mem, const std::vector<Mapping>& maps,
                        const std::vector<Guarded>& guarded, const EditsNow& edits_now,
                        TargetAddr main_stack_start, StackScratch& scratch) {
  CpuScope cpu(pid);
  RealtimeScope realtime;
  auto group = ThreadGroupStop::seize_all(pid);
  if (!group) return group.status();
  ThreadGroupStop& stop = **group;
  const std::vector<Thread>& threads = stop.threads();
  // The threads in `which`, checked; nullopt when none blocks.
  auto check = [&](const std::vector<size_t>& which) -> Result<std::optional<Blocker>> {
    if (which.empty()) return std::optional<Blocker>();
    std::vector<Thread> some;
    for (size_t i : which) some.push_back(threads[i]);
    return check_threads(pid, maps, some, guarded, main_stack_start, scratch);
  };

  // Before the pause: the sleepers, from their snapshots (settle() proves them still
  // valid once the sites are armed).
  std::vector<size_t> asleep;
  for (size_t i = 0; i < threads.size(); ++i)
    if (threads[i].asleep) asleep.push_back(i);
  auto blocker = check(asleep);
  if (!blocker) return blocker.status();
  if (blocker->has_value()) return Attempt{*blocker};
  size_t asleep_kib = scratch.bytes_read / 1024;
  // Those that ran while the others were checked, again (shorter each time), so that
  // few are left to run between their snapshot and the int3s: each one that did costs
  // a look and a check inside the pause.
  for (int round = 0; round < 4 && !asleep.empty(); ++round) {
    auto again = stop.settle(false);
    if (!again) return again.status();
    blocker = check(*again);
    if (!blocker) return blocker.status();
    if (blocker->has_value()) return Attempt{*blocker};
    if (again->size() * 8 < asleep.size()) break;
    asleep = std::move(*again);
  }

  auto stopped = stop.stop_running();
  if (!stopped) return stopped.status();
  blocker = check(*stopped);
  if (!blocker) return blocker.status();
  if (blocker->has_value()) return Attempt{*blocker};
  auto checked = std::chrono::steady_clock::now();

  // From here a sleeper that wakes and enters a site traps (and stops, being seized).
  auto edits = edits_now();
  if (!edits) return edits.status();
  SiteWriter writer(mem, std::move(*edits));
  stop.expect_traps(writer.sites());
  LS_TRY(writer.arm());
  // One that ran between its snapshot and the int3s may be anywhere: look again.
  auto woke = stop.settle();
  if (!woke) return woke.status();
  blocker = check(*woke);
  if (!blocker) return blocker.status();
  if (blocker->has_value()) return Attempt{*blocker};   // the writer puts the sites back
  auto settled = std::chrono::steady_clock::now();
  LS_TRY(writer.finish());
  auto written = std::chrono::steady_clock::now();
  stop.resume();
  const auto& tm = stop.timing();
  auto us = [](auto a, auto b) { return std::chrono::duration<double, std::micro>(b - a).count(); };
  size_t held = std::count_if(threads.begin(), threads.end(), [](const Thread& t) { return t.asleep; });
  Attempt done;
  done.pause_us = tm.pause_us();
  done.note = fmt::format("pause: stop {:.0f} us, check {:.0f} us, arm and settle {:.0f} us ({} woke), "
                          "write {:.0f} us, resume {:.0f} us; {} threads, {} held asleep (checked before the "
                          "pause: {} KiB of their stacks), {} trapped on a site, {} forked while held",
                          us(tm.first_stop, tm.all_stopped), us(tm.all_stopped, checked), us(checked, settled),
                          woke->size(), us(settled, written), us(written, tm.resumed), threads.size(), held,
                          asleep_kib, stop.trapped(), stop.forked());
  return done;
}

}  // namespace

Result<SafeStop> when_safe(Context& ctx, pid_t pid, const std::vector<Mapping>& maps,
                           const std::vector<Guarded>& guarded, const EditsNow& edits_now, int retries,
                           int delay_ms, const std::function<Status()>& before_attempt) {
  auto mem = Memory::open(pid);
  if (!mem) return mem.status();
  std::optional<Blocker> last;
  StackScratch scratch;
  TargetAddr main_stack_start = start_stack(pid);
  rehearse(pid, guarded, scratch);
  warm_target(pid, maps, main_stack_start, guarded, scratch);
  for (int n = 0; n <= retries; ++n) {
    LS_TRY(before_attempt());
    Result<Attempt> outcome = error("the attempt did not run");
    on_tracer_thread([&] { outcome = attempt(pid, *mem, maps, guarded, edits_now, main_stack_start, scratch); });
    if (!outcome) return outcome.status();
    if (outcome->blocker) {
      last = outcome->blocker;
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      continue;
    }
    ctx.note(outcome->note);
    return SafeStop{outcome->pause_us, n + 1};
  }
  return Status::error(fmt::format("gave up after {} attempts, nothing changed: {}", retries + 1,
                                   last ? last->describe() : "unknown"),
                       Exit::Unsafe);
}

}  // namespace ls::proc
