// ThreadGroupStop and RemoteSyscall against a real process with spinning, reading and
// sleeping threads; and the process target (target.h) that owns what livesplice reads of
// such a process.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "process/guardian.h"
#include "process/ptrace.h"
#include "process/target.h"
#include "process/unwind.h"

namespace {

using namespace std::chrono_literals;

// The target process with a pipe to its stdin and one from its stdout.
class Target {
 public:
  explicit Target(int spinners, int spawners = 0) {
    int in[2], out[2];
    EXPECT_EQ(pipe(in), 0);
    EXPECT_EQ(pipe(out), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      std::string n = std::to_string(spinners), m = std::to_string(spawners);
      execl(LS_PTRACE_TARGET, LS_PTRACE_TARGET, n.c_str(), m.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
    fcntl(from_, F_SETFL, O_NONBLOCK);
    EXPECT_TRUE(wait_for("ready"));
  }
  ~Target() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(to_);
    close(from_);
  }
  pid_t pid() const { return pid_; }
  void send(const std::string& s) { ASSERT_EQ(write(to_, s.data(), s.size()), static_cast<ssize_t>(s.size())); }
  // Waits up to 5 s for `needle` in the output read so far.
  bool wait_for(const std::string& needle) {
    auto until = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < until) {
      char buf[4096];
      ssize_t n = read(from_, buf, sizeof buf);
      if (n > 0) seen_.append(buf, n);
      if (seen_.find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  char state() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("State:", 0) == 0) return line.size() > 7 ? line[7] : '?';
    return '?';
  }
  std::string seen_;

 private:
  pid_t pid_ = 0;
  int to_ = -1, from_ = -1;
};

TEST(ThreadGroupStop, StopsEveryThreadAndResumes) {
  Target t(4);
  auto stop = ls::proc::ThreadGroupStop::stop(t.pid());
  ASSERT_TRUE(stop.ok()) << stop.status().message();
  EXPECT_EQ((*stop)->threads().size(), 6u);   // main + 4 spinners + sleeper
  for (const auto& th : (*stop)->threads()) EXPECT_NE(th.regs.rip, 0u);
  (*stop)->resume();
  EXPECT_GT((*stop)->timing().pause_us(), 0);
  t.send("after resume\n");
  EXPECT_TRUE(t.wait_for("read: after resume"));
  EXPECT_TRUE(t.wait_for("tick 3"));
}

// Threads keep appearing (and exiting) while the group is being stopped: once stop()
// returns, every thread the kernel lists is one of ours and in a ptrace-stop.
TEST(ThreadGroupStop, CatchesThreadsCreatedWhileStopping) {
  Target t(0, 2);
  for (int round = 0; round < 40; ++round) {
    auto stop = ls::proc::ThreadGroupStop::stop(t.pid());
    ASSERT_TRUE(stop.ok()) << stop.status().message();
    std::set<pid_t> ours;
    for (const auto& th : (*stop)->threads()) ours.insert(th.tid);
    std::string dir = "/proc/" + std::to_string(t.pid()) + "/task";
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      pid_t tid = std::stoi(e.path().filename().string());
      std::ifstream in(e.path() / "stat");
      std::string stat;
      std::getline(in, stat);   // "" once the thread is gone (a raw iterator would throw)
      auto close = stat.rfind(')');
      char state = close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
      if (state == 'Z' || state == 'X' || stat.empty()) continue;   // already exiting
      EXPECT_TRUE(ours.count(tid)) << "round " << round << ": thread " << tid << " (state " << state
                                   << ") was not stopped";
      EXPECT_EQ(state, 't') << "round " << round << ": thread " << tid;
    }
    (*stop)->resume();
    std::this_thread::sleep_for(2ms);
  }
  t.send("still alive\n");
  EXPECT_TRUE(t.wait_for("read: still alive"));
}

TEST(ThreadGroupStop, DestructorResumes) {
  Target t(2);
  {
    auto stop = ls::proc::ThreadGroupStop::stop(t.pid());
    ASSERT_TRUE(stop.ok()) << stop.status().message();
  }
  t.send("still alive\n");
  EXPECT_TRUE(t.wait_for("read: still alive"));
}

TEST(ThreadGroupStop, TracerDeathLeavesTargetRunning) {
  Target t(2);
  pid_t tool = fork();
  if (tool == 0) {
    auto stop = ls::proc::ThreadGroupStop::stop(t.pid());
    if (!stop.ok()) _exit(1);
    _exit(0);   // dies holding every thread stopped, without resuming
  }
  int status = 0;
  waitpid(tool, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  t.send("tracer gone\n");
  EXPECT_TRUE(t.wait_for("read: tracer gone"));
  EXPECT_NE(t.state(), 't');
}

TEST(RemoteSyscall, BorrowedReaderRestartsItsRead) {
  Target t(1);
  auto stop = ls::proc::ThreadGroupStop::stop(t.pid());
  ASSERT_TRUE(stop.ok()) << stop.status().message();
  auto mem = ls::proc::Memory::open(t.pid());
  ASSERT_TRUE(mem.ok());
  auto gadget = ls::proc::find_syscall_gadget(t.pid(), *mem);
  ASSERT_TRUE(gadget.ok()) << gadget.status().message();
  // The main thread (tid == pid) is blocked in read(0, ...).
  ls::proc::Thread* main_thread = nullptr;
  for (auto& th : (*stop)->threads())
    if (th.tid == t.pid()) main_thread = &th;
  ASSERT_NE(main_thread, nullptr);
  EXPECT_EQ(main_thread->regs.orig_rax, static_cast<unsigned long long>(SYS_read));
  {
    ls::proc::RemoteSyscall sc(**stop, *main_thread, *gadget);
    auto pid = sc.call(SYS_getpid);
    ASSERT_TRUE(pid.ok()) << pid.status().message();
    EXPECT_EQ(*pid, t.pid());
    auto fd = sc.call(SYS_dup, 1);
    ASSERT_TRUE(fd.ok());
    EXPECT_GE(*fd, 0);
    auto closed = sc.call(SYS_close, static_cast<uint64_t>(*fd));
    ASSERT_TRUE(closed.ok());
    EXPECT_EQ(*closed, 0);
  }
  (*stop)->resume();
  // The interrupted read() must continue as if nothing happened.
  t.send("data after borrow\n");
  EXPECT_TRUE(t.wait_for("read: data after borrow")) << t.seen_;
}

TEST(RemoteSyscall, BorrowedSleeperKeepsSleeping) {
  Target t(0);
  ASSERT_TRUE(t.wait_for("tick 1"));
  auto stop = ls::proc::ThreadGroupStop::stop(t.pid());
  ASSERT_TRUE(stop.ok()) << stop.status().message();
  auto mem = ls::proc::Memory::open(t.pid());
  ASSERT_TRUE(mem.ok());
  auto gadget = ls::proc::find_syscall_gadget(t.pid(), *mem);
  ASSERT_TRUE(gadget.ok());
  for (auto& th : (*stop)->threads()) {
    if (th.tid == t.pid()) continue;   // the sleeper
    ls::proc::RemoteSyscall sc(**stop, th, *gadget);
    auto tid = sc.call(SYS_gettid);
    ASSERT_TRUE(tid.ok());
    EXPECT_EQ(*tid, th.tid);
  }
  (*stop)->resume();
  EXPECT_TRUE(t.wait_for("tick 4")) << t.seen_;
  t.send("and reads\n");
  EXPECT_TRUE(t.wait_for("read: and reads"));
}

// The unwinder, set up before the stop as the safety check does: every thread of the
// stopped target (spinning, blocked in read, sleeping) unwinds with CFI to its start,
// each frame's stack pointer above the one before.
struct Unwinding {
  std::unique_ptr<ls::proc::Unwinder> unwinder;
  std::unique_ptr<ls::proc::ThreadGroupStop> stop;
};

// The unwinder set up before the stop, as the safety check does, then every thread stopped.
void unwind_stopped(const Target& t, Unwinding& out) {
  auto unwinder = ls::proc::Unwinder::open(t.pid());
  ASSERT_TRUE(unwinder.ok()) << unwinder.status().message();
  auto stop = ls::proc::ThreadGroupStop::stop(t.pid());
  ASSERT_TRUE(stop.ok()) << stop.status().message();
  out = {std::move(*unwinder), std::move(*stop)};
}

TEST(Unwinder, EveryThreadUnwindsToItsStart) {
  Target t(2);
  // A thread can be stopped at an instant its CFI does not describe as register +
  // offset (a libc routine that realigns its stack): the walk then stops there, which
  // the safety check answers by scanning conservatively. Such instants are brief, so a
  // few stops are allowed to find one where every thread walks to its start; a broken
  // unwinder fails every one of them.
  std::string last_failure;
  for (int attempt = 0; attempt < 10; ++attempt) {
    Unwinding u;
    ASSERT_NO_FATAL_FAILURE(unwind_stopped(t, u));
    ls::proc::PageReader reader(t.pid());
    last_failure.clear();
    for (const auto& th : u.stop->threads()) {
      reader.forget();
      auto walk = u.unwinder->walk(th.tid, th.regs, [&](ls::TargetAddr a, uint64_t* w) { return reader.read(a, w); });
      if (!walk.complete || walk.frames.size() < 2) {
        last_failure = fmt::format("thread {}: {} frame(s): {}", th.tid, walk.frames.size(), walk.stopped);
        break;
      }
      EXPECT_EQ(walk.frames[0].pc.value(), th.regs.rip);
      for (size_t k = 1; k < walk.frames.size(); ++k)
        EXPECT_GT(walk.frames[k].sp, walk.frames[k - 1].sp) << "thread " << th.tid << " frame " << k;
    }
    u.stop->resume();
    if (last_failure.empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "no stop in 10 had every thread unwind to its start; the last: " << last_failure;
}

// A pc in memory no file maps (where the new code of an earlier update runs) has no
// CFI: the walk stops at it and says so, naming the pc.
TEST(Unwinder, PcWithoutCfiStopsTheWalk) {
  Target t(0);
  Unwinding u;
  ASSERT_NO_FATAL_FAILURE(unwind_stopped(t, u));
  user_regs_struct regs = u.stop->threads().front().regs;
  regs.rip = regs.rsp;   // the stack: no file, no CFI
  ls::proc::PageReader reader(t.pid());
  auto walk = u.unwinder->walk(u.stop->threads().front().tid, regs,
                               [&](ls::TargetAddr a, uint64_t* w) { return reader.read(a, w); });
  EXPECT_FALSE(walk.complete);
  ASSERT_EQ(walk.frames.size(), 1u) << walk.stopped;
  EXPECT_NE(walk.stopped.find(fmt::format("no CFI for pc {:#x}", regs.rip)), std::string::npos) << walk.stopped;
}

// The process target: its maps, memory and modules are the process's; its ledger is read
// only under its lock, and for a process livesplice never touched it is empty.
TEST(ProcessTarget, OwnsWhatATargetIs) {
  Target t(1);
  auto target = ls::proc::Target::open(t.pid());
  ASSERT_TRUE(target.ok()) << target.status().message();
  EXPECT_EQ(target->pid(), t.pid());
  ASSERT_FALSE(target->maps().empty());
  const std::string exe = std::filesystem::canonical(LS_PTRACE_TARGET);
  const ls::proc::Mapping* first = nullptr;
  for (const auto& m : target->maps())
    if (m.path == exe && !first) first = &m;
  ASSERT_NE(first, nullptr) << exe << " is not in the maps";
  auto magic = target->memory().read_value<uint32_t>(first->range.start);
  ASSERT_TRUE(magic.ok()) << magic.status().message();
  EXPECT_EQ(*magic, 0x464c457fu);   // "\x7fELF": the executable's first page
  ASSERT_TRUE(target->read_modules().ok());
  ASSERT_FALSE(target->modules().empty());
  EXPECT_EQ(target->modules().front().path, exe);

  auto unlocked = target->read_ledger();
  EXPECT_FALSE(unlocked.ok()) << "a ledger read without the lock";
  ASSERT_TRUE(target->lock(ls::proc::Access::Look, 5).ok());
  auto read = target->read_ledger();
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_FALSE(target->ledger().exists());
  EXPECT_TRUE(target->ledger().entries().empty());
}

// A guardian child (guardian.h) reads the target through the memory handle its parent
// opened: the fork shares it, and it names the target's address space.
TEST(ProcessTarget, ItsMemoryServesAGuardian) {
  Target t(1);
  auto target = ls::proc::Target::open(t.pid());
  ASSERT_TRUE(target.ok()) << target.status().message();
  const ls::TargetAddr at = target->maps().front().range.start;
  auto here = target->memory().read_value<uint64_t>(at);
  ASSERT_TRUE(here.ok()) << here.status().message();
  auto there = ls::proc::run_to_completion([&](std::string& payload) -> ls::Status {
    auto v = target->memory().read_value<uint64_t>(at);
    if (!v) return v.status();
    payload = std::to_string(*v);
    return {};
  });
  ASSERT_TRUE(there.ok()) << there.status().message();
  EXPECT_EQ(*there, std::to_string(*here));
}

// Once its process has exited, a target's maps are not read again (and the ones it had
// are kept): nothing of another process is taken for its.
TEST(ProcessTarget, AnExitedProcessIsNotReadAgain) {
  std::optional<Target> t(std::in_place, 0);
  auto target = ls::proc::Target::open(t->pid());
  ASSERT_TRUE(target.ok()) << target.status().message();
  const size_t mappings = target->maps().size();
  const pid_t pid = t->pid();
  t.reset();   // killed and reaped
  auto refreshed = target->refresh_maps();
  ASSERT_FALSE(refreshed.ok());
  EXPECT_NE(refreshed.message().find(std::to_string(pid)), std::string::npos) << refreshed.message();
  EXPECT_EQ(target->maps().size(), mappings);
}

}  // namespace
