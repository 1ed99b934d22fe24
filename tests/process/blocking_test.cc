// Threads blocked in system calls must not notice an update (issue 11). The case
// `blocking` runs one thread per kind of blocking call (epoll_wait, recv and read on a
// socket, sigtimedwait, semop, futex, inotify read, poll, nanosleep, accept), with a
// finite timeout or an infinite one ended by an event, and prints per call its result
// and how late it returned. The program first runs untouched (the control: the
// machine's noise in this very run), then is updated and undone repeatedly; during that
// no call may fail with EINTR or any other error, none may return early, and none may
// return later than the same kind did in the control, give or take the run's noise.
#include <gtest/gtest.h>
#include <sys/sem.h>

#include <algorithm>
#include <map>
#include <regex>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

struct Call {
  std::string kind;
  long ret = 0;
  std::string err;
  bool early = false;
  long late = 0;       // µs after the timeout (finite) or the event (infinite)
  std::string line;
};

std::vector<Call> calls(const std::vector<std::string>& lines) {
  static const std::regex re(R"(^call (\S+) ret=(-?\d+) err=(\S+) took=\d+ late=(\S+)$)");
  std::vector<Call> out;
  for (const auto& l : lines) {
    std::smatch m;
    if (!std::regex_match(l, m, re)) continue;
    Call c{m[1], std::stol(m[2]), m[3], m[4] == "early", 0, l};
    if (!c.early) c.late = std::stol(m[4]);
    out.push_back(std::move(c));
  }
  return out;
}

// What a call of each kind must return: the event, or its own timeout.
bool expected_result(const Call& c) {
  bool finite = c.kind.ends_with("_fin");
  if (!finite) return c.err == "0" && c.ret >= 0;
  if (c.kind == "epoll_fin" || c.kind == "poll_fin") return c.err == "0" && c.ret == 0;
  if (c.kind == "cond_fin" || c.kind == "futex_fin") return c.err == "ETIMEDOUT";
  if (c.kind == "nanosleep_fin") return c.err == "0" && c.ret == 0;
  return c.err == "EAGAIN";   // recv, read (SO_RCVTIMEO), sigtimedwait, semtimedop
}

class Blocking : public PtraceTest {
 protected:
  std::string src() const { return tmp / "src"; }
  std::string update() const { return tmp / "fix.lsu"; }
  TempDir tmp;
};

TEST_F(Blocking, CallsDoNotNoticeUpdates) {
  build_case("blocking", src());
  Program prog({src() + "/prog"}, Program::Options{src()});
  size_t ready = prog.wait_for("ready:", 0, 10s);
  struct SemGuard {
    int id = -1;
    ~SemGuard() {
      if (id >= 0) semctl(id, 0, IPC_RMID);
    }
  } sems;
  if (auto at = prog.find("semaphores ")) sems.id = std::stoi(prog.line(*at).substr(11));
  create_update(src(), case_dir("blocking") + "/fix.patch", update());

  // The control: the same calls with no update, long enough for every finite kind to
  // time out a dozen times.
  size_t control_from = prog.line_count();
  std::this_thread::sleep_for(3s);
  size_t updates_from = prog.line_count();
  ASSERT_GT(updates_from, ready);
  const int cycles = 8;
  for (int i = 0; i < cycles; ++i) {
    apply_ok(prog, update());
    prog.wait_for("sentinel 2002", prog.line_count(), 5s);
    undo_ok(prog);
    prog.wait_for("sentinel 1001", prog.line_count(), 5s);
  }
  std::this_thread::sleep_for(500ms);   // calls under way at the last undo end
  expect_alive_and_running(prog);

  std::vector<std::string> all = prog.lines(control_from);
  std::vector<Call> control = calls({all.begin(), all.begin() + static_cast<long>(updates_from - control_from)});
  std::vector<Call> updated = calls({all.begin() + static_cast<long>(updates_from - control_from), all.end()});

  // The run's noise: the latest any call of any kind returned in the control.
  std::map<std::string, std::pair<long, long>> range;   // kind -> control min, max late
  long noise = 0;
  for (const auto& c : control) {
    ASSERT_TRUE(expected_result(c) && !c.early) << "the program misbehaves without any update: " << c.line;
    auto [it, fresh] = range.try_emplace(c.kind, c.late, c.late);
    it->second = {std::min(it->second.first, c.late), std::max(it->second.second, c.late)};
    noise = std::max(noise, c.late);
  }
  ASSERT_EQ(range.size(), 15u) << "every kind must have returned in the control:\n" << prog.tail(40);

  std::map<std::string, int> seen;
  for (const auto& c : updated) {
    ++seen[c.kind];
    EXPECT_TRUE(expected_result(c)) << "a call failed during the updates: " << c.line;
    EXPECT_FALSE(c.early) << "returned with no event made: " << c.line;
    auto [lo, hi] = range.at(c.kind);
    // Early: sooner after its timeout than any call of its kind without updates (1 ms
    // of slack for timers rounding). Late: later than the control's latest of its kind
    // by more than the latest of any kind (a timeout restarted from its full value is
    // late by up to its whole length).
    EXPECT_GE(c.late, std::min(lo, 0L) - 1000) << "returned early: " << c.line;
    EXPECT_LE(c.late, hi + noise) << "returned late (control: " << lo << ".." << hi << " us, noise " << noise
                                  << " us): " << c.line;
  }
  for (const auto& [kind, _] : range)
    EXPECT_GE(seen[kind], 2) << kind << " hardly returned during the updates:\n" << prog.tail(40);
}

}  // namespace
