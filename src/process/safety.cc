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

#include "arch/registers.h"
#include "process/scheduling.h"

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

TargetAddr start_stack(pid_t pid) {
  int64_t v = stat_field(pid, 0, 28);
  return TargetAddr(v > 0 ? static_cast<uint64_t>(v) : 0);
}

// For the length of one attempt the stopping process runs at the lowest real-time
// priority on the CPU the target last ran on (scheduling.h): a thread it resumes (or
// whose stop wakes it) cannot then preempt it, and the wake-ups stay local.

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

// The stack pointer and pc a thread blocked in a system call will return to user space
// with (the last two fields of /proc/PID/task/TID/syscall), or nulls: a thread running
// user code reports "running", and then nothing is known before it is stopped.
struct BlockedAt {
  TargetAddr sp, pc;
};
BlockedAt blocked_at(pid_t pid, const char* tid) {
  char path[96], buf[256];
  std::snprintf(path, sizeof path, "/proc/%d/task/%s/syscall", static_cast<int>(pid), tid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return {};
  buf[n] = 0;
  char* fields[10];
  int count = 0;
  for (char* save = nullptr, *f = strtok_r(buf, " \n", &save); f && count < 10; f = strtok_r(nullptr, " \n", &save))
    fields[count++] = f;
  if (count != 9) return {};
  return {TargetAddr(std::strtoull(fields[7], nullptr, 16)), TargetAddr(std::strtoull(fields[8], nullptr, 16))};
}

// Reading a page of the target for the first time from a (freshly forked) process
// costs several times a repeated read on a virtual machine: with 256 threads, the first
// check of their stacks took 2.8 ms and a second one 0.25 ms. So, before the stop, what
// the pause will touch is read once: the bytes the splice writes (or undo restores), and
// the stacks of the threads blocked in system calls (most threads of a server) the way
// the check will read them, from the stack pointer they will return with to the end of
// the mapping. Nothing depends on what is read. Likewise the first walk in a process
// pays for libdw's code and each pc's CFI lookup (60 us for one thread on a 2-vCPU
// guest, 6 us warm): those threads are walked too, from the pc and stack pointer they
// will return with (other registers unknown: what the walks find is thrown away; what
// stays is the cache of CFI rows by pc, which does not depend on registers).
void warm_target(pid_t pid, const std::vector<Mapping>& maps, TargetAddr start_stack, const std::vector<Guarded>& guarded,
                 StackScratch& scratch, Unwinder* unwinder) {
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
    BlockedAt at = blocked_at(pid, e->d_name);
    TargetAddr sp = at.sp;
    const Mapping* m = sp.value() ? mapping_at(maps, sp) : nullptr;
    if (!m) continue;
    if (unwinder) {
      arch::Registers regs{};
      arch::set_sp(regs, sp.value());
      arch::set_pc(regs, at.pc.value());
      scratch.pages.forget();
      (void)unwinder->walk(static_cast<pid_t>(std::atoi(e->d_name)), regs,
                           [&](TargetAddr a, uint64_t* word) { return scratch.pages.read(a, word); });
    }
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

// A frame CFI found in a guarded range (frame 0, the PC, is checked before). A return
// address at a range's start follows a call that never returns and is not in the range;
// an interrupted frame at its entry has not started it yet.
template <typename Find>
std::optional<Blocker> frame_blocker(const StackWalk& walk, pid_t tid, const Find& find) {
  for (size_t k = 1; k < walk.frames.size(); ++k) {
    const Frame& f = walk.frames[k];
    const Guarded* g = find(f.pc);
    if (!g || f.pc == g->range.start) continue;
    if (f.activation && (f.pc == g->range.end || f.pc == g->patched.start)) continue;
    return Blocker{tid, g->label, f.pc, f.activation, static_cast<int>(k), -1, ""};
  }
  return std::nullopt;
}

}  // namespace

std::string Blocker::describe() const { return where() + after_wait; }

std::string Blocker::where() const {
  if (executing && frame < 1) return fmt::format("thread {} is executing {} (pc {})", tid, label, address);
  if (executing)
    return fmt::format("thread {} was interrupted in {} (pc {}, frame {} of its stack, unwound with CFI)", tid, label,
                       address, frame);
  if (frame >= 1)
    return fmt::format("thread {} will return into {} (return address {}, frame {} of its stack, unwound with CFI)",
                       tid, label, address, frame);
  return fmt::format("thread {}: {}; stack scanned conservatively: word at sp+{:#x} ({}) points into {}", tid,
                     scanned_because, sp_offset, address, label);
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
                                             StackScratch& scratch, Unwinder* unwinder,
                                             const std::string& no_unwinder) {
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
    TargetAddr pc(arch::pc(t.regs));
    const Guarded* g = find(pc);
    // At the entry (or just past endbr64, at the jump site) nothing that matters has
    // run yet: the thread will take the jump.
    if (g && pc < g->range.end && pc != g->range.start && pc != g->patched.start)
      return std::optional<Blocker>(Blocker{t.tid, g->label, pc, true});
  }

  // A word the scan finds is judged by the thread's frames, unwound with CFI only then:
  // most threads hold no such word, and a walk costs microseconds inside the pause.
  // nullopt: the word is dead (in the part of the stack CFI covered, and no frame
  // there is in a guarded range); else what blocks.
  struct Walked {
    bool done = false, complete = false;
    TargetAddr stuck_sp;                // CFI says nothing about the stack from here up
    std::string stopped;
  };
  std::vector<Walked> walked(unwinder ? threads.size() : 0);
  scratch.frames_unwound = scratch.threads_unwound = 0;
  scratch.unwind_us = 0;
  auto judge = [&](size_t i, TargetAddr word_at, const Guarded& g, TargetAddr a) -> std::optional<Blocker> {
    const Thread& t = threads[i];
    Blocker conservative{t.tid, g.label, a, false, -1, word_at - TargetAddr(arch::sp(t.regs)),
                         no_unwinder.empty() ? "no CFI read" : no_unwinder};
    if (!unwinder) return conservative;
    Walked& w = walked[i];
    if (!w.done) {
      auto start = std::chrono::steady_clock::now();
      scratch.pages.forget();
      StackWalk walk =
          unwinder->walk(t.tid, t.regs, [&](TargetAddr at, uint64_t* word) { return scratch.pages.read(at, word); });
      scratch.unwind_us +=
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
      scratch.frames_unwound += walk.frames.size();
      ++scratch.threads_unwound;
      if (auto b = frame_blocker(walk, t.tid, find)) return b;
      w = {true, walk.complete, walk.frames.empty() ? TargetAddr(arch::sp(t.regs)) : walk.frames.back().sp,
           std::move(walk.stopped)};
    }
    if (w.complete || word_at < w.stuck_sp) return std::nullopt;
    conservative.scanned_because = w.stopped;
    return conservative;
  };

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
        if (into_patch || preceded_by_call(*g, a))
          if (auto b = judge(p.thread, p.at + static_cast<int64_t>(off), *g, a)) return b;
      }
    }
    scratch.pieces.clear();
    used = 0;
    return std::nullopt;
  };
  for (size_t i = 0; i < threads.size(); ++i) {
    if (threads[i].gone) continue;
    TargetAddr at(arch::sp(threads[i].regs) & ~uint64_t{7});
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

StackScratch::StackScratch(pid_t pid) : buffer(kBytes), pages(pid) {
  // Touch every page now (vector's value-initialisation writes each byte).
  pieces.reserve(kMaxPieces);
  local.reserve(kMaxPieces);
  remote.reserve(kMaxPieces);
}

namespace {

using Clock = std::chrono::steady_clock;
double micros(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); }
using CheckFn = std::function<Result<std::optional<Blocker>>(const std::vector<size_t>&)>;

// What the hot wait leaves: who was still in the way at its limit (nothing changes
// then), and how long threads were kept from running.
struct HotWait {
  std::optional<Blocker> blocker;
  double longest_us = 0;                  // the longest stop that ended during the wait
  std::vector<Clock::time_point> since;   // when each thread was last stopped
  int rounds = 0;
  size_t held = 0;                        // threads waiting at an entry at the end
  double waited_us = 0;
};

// The hot wait (docs/ARCHITECTURE.md): the sites are armed, so no thread can enter a
// function being replaced; the threads not waiting at an entry run for a short,
// growing interval, are stopped again (or held asleep) and everything is checked,
// until nothing blocks or `limit` passes. A thread that reached an entry traps and
// stays stopped there with its pc on the site: it has run nothing of the function, and
// the check passes it as it passes any thread at an entry. It is not resumed before
// the end: the jump (or, at the limit, the original first byte) is what it runs next.
Result<HotWait> wait_out(ThreadGroupStop& stop, const std::vector<SiteEdit>& edits, std::chrono::microseconds limit,
                         Blocker first, const CheckFn& check) {
  auto start = Clock::now();
  const std::vector<Thread>& threads = stop.threads();
  HotWait hot;
  hot.since.assign(threads.size(), stop.timing().first_stop);
  auto entry_of = [&](const Thread& t) -> const SiteEdit* {
    for (const auto& e : edits)
      if (!t.gone && t.stopped && e.at.value() == arch::pc(t.regs)) return &e;
    return nullptr;
  };
  auto stays = [&](const Thread& t) { return entry_of(t) != nullptr; };
  std::optional<Blocker> blocker = std::move(first);
  auto interval = std::chrono::microseconds(50);
  while (blocker && Clock::now() - start < limit) {
    auto now = Clock::now();
    for (size_t i = 0; i < threads.size(); ++i)
      if (!threads[i].gone && threads[i].stopped && !stays(threads[i]))
        hot.longest_us = std::max(hot.longest_us, micros(hot.since[i], now));
    auto fresh = stop.run_for(interval, stays);
    if (!fresh) return fresh.status();
    auto woke = stop.settle();   // a sleeper that woke and trapped, or went back to sleep
    if (!woke) return woke.status();
    // A stop began no earlier than the end of the interval: counted from there.
    hot.since.resize(threads.size(), now + interval);
    for (size_t i : *fresh) hot.since[i] = now + interval;
    for (size_t i : *woke) hot.since[i] = now + interval;
    // Every thread, every round: the stopped ones have run, a sleeper may be the one
    // inside (asleep in it), and one that went to sleep meanwhile has a new snapshot.
    std::vector<size_t> look;
    for (size_t i = 0; i < threads.size(); ++i)
      if (!threads[i].gone) look.push_back(i);
    auto b = check(look);
    if (!b) return b.status();
    blocker = std::move(*b);
    ++hot.rounds;
    interval = std::min(interval * 2, std::chrono::microseconds(2000));
  }
  hot.waited_us = micros(start, Clock::now());
  std::string waiting;
  for (const auto& t : threads)
    if (const SiteEdit* e = entry_of(t)) {
      ++hot.held;
      waiting += fmt::format("{}thread {} waits at the entry of {}", waiting.empty() ? "" : ", ", t.tid, e->function);
    }
  if (blocker) {
    blocker->after_wait = fmt::format("; it stayed for the {:.0f} ms its callers were kept out", hot.waited_us / 1000);
    if (!waiting.empty()) blocker->after_wait += fmt::format(", while {} (holding something it needs?)", waiting);
    hot.blocker = std::move(blocker);
  }
  return hot;
}

// The longest any thread was kept from running, if every one still stopped runs at `end`.
double longest_stop(const HotWait& hot, Clock::time_point end) {
  double longest = hot.longest_us;
  for (auto since : hot.since) longest = std::max(longest, micros(since, end));
  return longest;
}

// One attempt, on the tracer thread: seize, check the sleepers, stop the running
// threads (the pause starts) and check them, arm, settle and check what ran, finish.
struct Attempt {
  std::optional<Blocker> blocker;   // the attempt changed nothing
  double pause_us = 0;
  std::string note;                 // where the pause went
};

Result<Attempt> attempt(pid_t pid, const Memory& mem, const std::vector<Mapping>& maps,
                        const std::vector<Guarded>& guarded, const EditsNow& edits_now,
                        TargetAddr main_stack_start, StackScratch& scratch, Unwinder* unwind,
                        const std::string& no_unwinder, std::chrono::microseconds hot_wait,
                        const WhileStopped& while_stopped) {
  CpuScope cpu(pid);
  RealtimeScope realtime;
  auto group = ThreadGroupStop::seize_all(pid);
  if (!group) return group.status();
  ThreadGroupStop& stop = **group;
  const std::vector<Thread>& threads = stop.threads();
  // A blocked attempt changes nothing; its pause (if it stopped anyone) still counts
  // towards the longest any thread was kept from running.
  // (Measured up to now: the sites an armed writer must put back come first, then the
  // resume, both on the way out.)
  auto blocked = [&](const Blocker& b, double pause_us = -1) {
    auto first = stop.timing().first_stop;
    bool stopped_any = first != std::chrono::steady_clock::time_point{};
    if (pause_us < 0) pause_us = stopped_any ? micros(first, Clock::now()) : 0.0;
    return Attempt{b, pause_us};
  };
  // The threads in `which`, checked; nullopt when none blocks.
  auto check = [&](const std::vector<size_t>& which) -> Result<std::optional<Blocker>> {
    if (which.empty()) return std::optional<Blocker>();
    std::vector<Thread> some;
    for (size_t i : which) some.push_back(threads[i]);
    return check_threads(pid, maps, some, guarded, main_stack_start, scratch, unwind, no_unwinder);
  };

  // Before the pause: the sleepers, from their snapshots (settle() proves them still
  // valid once the sites are armed).
  std::vector<size_t> asleep;
  for (size_t i = 0; i < threads.size(); ++i)
    if (threads[i].asleep) asleep.push_back(i);
  auto blocker = check(asleep);
  if (!blocker) return blocker.status();
  if (blocker->has_value() && hot_wait.count() == 0) return blocked(**blocker);
  size_t asleep_kib = scratch.bytes_read / 1024;
  // Those that ran while the others were checked, again (shorter each time), so that
  // few are left to run between their snapshot and the int3s: each one that did costs
  // a look and a check inside the pause.
  for (int round = 0; round < 4 && !asleep.empty() && !blocker->has_value(); ++round) {
    auto again = stop.settle(false);
    if (!again) return again.status();
    blocker = check(*again);
    if (!blocker) return blocker.status();
    if (blocker->has_value() && hot_wait.count() == 0) return blocked(**blocker);
    if (again->size() * 8 < asleep.size()) break;
    asleep = std::move(*again);
  }

  auto stopped = stop.stop_running();
  if (!stopped) return stopped.status();
  if (!blocker->has_value()) blocker = check(*stopped);
  if (!blocker) return blocker.status();
  auto checked = std::chrono::steady_clock::now();
  if (blocker->has_value() && hot_wait.count() == 0) return blocked(**blocker);

  // From here a sleeper that wakes and enters a site traps (and stops, being seized).
  auto edits = edits_now();
  if (!edits) return edits.status();
  SiteWriter writer(mem, std::move(*edits));
  stop.expect_traps(writer.sites());
  LS_TRY(writer.arm());
  // One that ran between its snapshot and the int3s may be anywhere: look again.
  auto woke = stop.settle();
  if (!woke) return woke.status();
  if (!blocker->has_value()) blocker = check(*woke);
  if (!blocker) return blocker.status();
  HotWait hot;
  if (blocker->has_value()) {
    // Someone is inside: with every entry trapped, let the threads run it out.
    auto waited = wait_out(stop, writer.edits(), hot_wait, **blocker, check);
    if (!waited) return waited.status();
    hot = std::move(*waited);
    if (hot.blocker) return blocked(*hot.blocker, longest_stop(hot, Clock::now()));   // the writer puts the sites back
  }
  auto settled = std::chrono::steady_clock::now();
  if (while_stopped) LS_TRY(while_stopped(stop));   // the writer puts the sites back on failure
  LS_TRY(writer.finish());
  auto written = std::chrono::steady_clock::now();
  stop.resume();
  const auto& tm = stop.timing();
  auto us = [](auto a, auto b) { return std::chrono::duration<double, std::micro>(b - a).count(); };
  size_t held = std::count_if(threads.begin(), threads.end(), [](const Thread& t) { return t.asleep; });
  Attempt done;
  done.pause_us = hot.rounds ? longest_stop(hot, tm.resumed) : tm.pause_us();
  if (hot.rounds)
    done.note = fmt::format("hot wait: {} rounds in {:.0f} us, {} threads released from an entry; ", hot.rounds,
                            hot.waited_us, hot.held);
  done.note += fmt::format("pause: stop {:.0f} us, check {:.0f} us, arm and settle {:.0f} us ({} woke), "
                          "write {:.0f} us, resume {:.0f} us; {} threads, {} held asleep (checked before the "
                          "pause: {} KiB of their stacks), {} trapped on a site, {} forked while held; {} unwound "
                          "with CFI ({} frames, {:.0f} us)",
                          us(tm.first_stop, tm.all_stopped), us(tm.all_stopped, checked), us(checked, settled),
                          woke->size(), us(settled, written), us(written, tm.resumed), threads.size(), held,
                          asleep_kib, stop.trapped(), stop.forked(), scratch.threads_unwound, scratch.frames_unwound,
                          scratch.unwind_us);
  return done;
}

}  // namespace

Result<SafeStop> when_safe(Context& ctx, const Target& target, const std::vector<Guarded>& guarded,
                           const EditsNow& edits_now, const StopPolicy& policy,
                           const std::function<Status()>& before_attempt, const WhileStopped& while_stopped) {
  const pid_t pid = target.pid();
  const std::vector<Mapping>& maps = target.maps();
  const Memory& mem = target.memory();
  std::optional<Blocker> last;
  double longest_us = 0;
  StackScratch scratch(pid);
  TargetAddr main_stack_start = start_stack(pid);
  // The modules and their CFI, read before the stop; without them every stack is scanned.
  std::string no_unwinder;
  auto opening = std::chrono::steady_clock::now();
  auto unwinder = Unwinder::open(pid);
  ctx.note(fmt::format("process {}: modules and their CFI read in {:.1f} ms", pid,
                       std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - opening).count()));
  if (!unwinder) {
    no_unwinder = "no CFI read (" + unwinder.status().message() + ")";
    ctx.note(fmt::format("process {}: {}: stacks will be scanned conservatively", pid, no_unwinder));
  }
  Unwinder* unwind = unwinder ? unwinder->get() : nullptr;
  rehearse(pid, guarded, scratch);
  warm_target(pid, maps, main_stack_start, guarded, scratch, unwind);
  for (int n = 0; n <= policy.retries; ++n) {
    LS_TRY(before_attempt());
    Result<Attempt> outcome = error("the attempt did not run");
    on_tracer_thread([&] {
      outcome = attempt(pid, mem, maps, guarded, edits_now, main_stack_start, scratch, unwind, no_unwinder,
                        std::chrono::microseconds(int64_t{policy.hot_wait_ms} * 1000), while_stopped);
    });
    if (!outcome) return outcome.status();
    longest_us = std::max(longest_us, outcome->pause_us);
    if (outcome->blocker) {
      last = outcome->blocker;
      std::this_thread::sleep_for(std::chrono::milliseconds(policy.retry_delay_ms));
      continue;
    }
    ctx.note(outcome->note);
    return SafeStop{outcome->pause_us, longest_us, n + 1};
  }
  return Status::error(fmt::format("gave up after {} attempts, nothing changed: {}", policy.retries + 1,
                                   last ? last->describe() : "unknown"),
                       Exit::Unsafe);
}

}  // namespace ls::proc
