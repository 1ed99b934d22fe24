// The thread apply borrows for its system calls (mapping the new code, creating the
// ledger) is kept from running while it makes them: it must be one that is not serving,
// lent for one call per mapping (parked.h), and the pause apply reports must cover that
// time as well as the splice's stop.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Borrow : public PtraceTest {
 protected:
  // cases/parked running with `args`, its parked thread's line, and its update.
  Program& start(const std::vector<std::string>& args = {}) {
    src = build_case("parked", tmp / "src");
    std::vector<std::string> argv{src + "/prog"};
    argv.insert(argv.end(), args.begin(), args.end());
    prog = std::make_unique<Program>(argv);
    parked = prog->line(prog->wait_for("parked thread "));
    prog->wait_for_count("sentinel 1001", 3);
    update = create_update(src, case_dir("parked") + "/fix.patch", tmp / "fix.lsu");
    return *prog;
  }

  TempDir tmp;
  std::string src, parked, update;
  std::unique_ptr<Program> prog;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The main thread (the lowest TID, which apply used to borrow) serves, waking every
// millisecond; a second thread is parked in pause(). Apply borrows the parked one, and
// its pause is the longest of the two phases it reports.
TEST_F(Borrow, ParkedThreadNotTheServingOne) {
  Program& prog = start();
  std::string serving = prog.line(prog.wait_for("serving thread "));
  prog.wait_for_count("sentinel 1001", 20);   // the serving thread has woken a few hundred times

  Json applied = apply_ok(prog, update);
  ASSERT_TRUE(applied.contains("borrowed") && applied["borrowed"].contains("thread")) << applied.dump(2);
  std::string borrowed = std::to_string(applied["borrowed"]["thread"].get<int>());
  EXPECT_EQ("parked thread " + borrowed, parked) << "serving: " << serving << "\n" << applied.dump(2);
  // Lent for one call per mapping (the ledger's copy, then the code): the clone of the
  // thread livesplice parks in the process, which makes the other calls.
  EXPECT_EQ(applied["borrowed"]["calls"].get<int>(), 2) << applied.dump(2);
  ASSERT_TRUE(applied.contains("parked")) << applied.dump(2);
  EXPECT_GE(applied["parked"]["calls"].get<int>(), 6) << applied.dump(2);
  EXPECT_GT(applied["parked"]["us"].get<double>(), 0) << applied.dump(2);

  ASSERT_TRUE(applied.contains("pause_phases_us")) << applied.dump(2);
  double map = applied["pause_phases_us"]["map"], splice = applied["pause_phases_us"]["splice"];
  EXPECT_GT(map, 0) << applied.dump(2);
  EXPECT_EQ(applied["pause_us"].get<double>(), std::max(map, splice)) << applied.dump(2);

  prog.wait_for("sentinel 2002", prog.line_count());
  expect_alive_and_running(prog);
  undo_ok(prog);
  prog.wait_for("sentinel 1001", prog.line_count());
  expect_alive_and_running(prog);
}

// Issue 11, 2(c): no phase may keep a thread from running longer than the splice needs.
// The thread lent for the clone sleeps in pause(): it would have run again only for a
// signal, none comes, so its hold keeps it from running no longer than the splice's
// own stop of this very process (the median over cycles, within the splice's own
// spread in the same run). Its hold itself is reported beside that, never hidden.
TEST_F(Borrow, LentThreadKeptFromRunningNoLongerThanTheSplice) {
  Program& prog = start();

  std::vector<double> kept, held, splice;
  std::string log;
  for (int cycle = 0; cycle < 7; ++cycle) {
    Json applied = apply_ok(prog, update);
    undo_ok(prog);
    if (cycle == 0) continue;   // the first also maps the ledger's copy: a second clone
    const Json& b = applied.at("borrowed");
    EXPECT_EQ("parked thread " + std::to_string(b.at("thread").get<int>()), parked) << applied.dump(2);
    EXPECT_TRUE(b.at("slept").get<bool>()) << "no signal is ever sent to it\n" << applied.dump(2);
    EXPECT_LE(b.at("kept_us").get<double>(), b.at("held_us").get<double>()) << applied.dump(2);
    EXPECT_EQ(b.at("kept_us").get<double>(), applied.at("pause_phases_us").at("map").get<double>());
    kept.push_back(b.at("kept_us").get<double>());
    held.push_back(b.at("held_us").get<double>());
    splice.push_back(applied.at("pause_phases_us").at("splice").get<double>());
    log += " " + std::to_string(static_cast<int>(held.back())) + "/" + std::to_string(static_cast<int>(kept.back())) +
           "/" + std::to_string(static_cast<int>(splice.back()));
  }
  // The splice's noise in this run: its median absolute deviation.
  std::vector<double> deviation;
  for (double s : splice) deviation.push_back(std::abs(s - median(splice)));
  std::cout << "lent thread held/kept from running/splice, us:" << log << "; medians " << median(held) << "/"
            << median(kept) << "/" << median(splice) << "\n";
  EXPECT_LE(median(kept), median(splice) + median(deviation))
      << "held/kept/splice per cycle, us:" << log;
  expect_alive_and_running(prog);
}

// The sleep is proven, not assumed: a signal for the lent thread that arrives while it
// is held (sent by livesplice itself at that moment, LIVESPLICE_SIGNAL_AT) would have
// woken it, so the whole hold counts as kept from running.
TEST_F(Borrow, ASignalDuringTheHoldCountsTheWholeHold) {
  Program& prog = start();

  lstest::RunOptions o;
  o.env["LIVESPLICE_SIGNAL_AT"] = "lend:held:" + std::to_string(SIGUSR1);
  const size_t mark = prog.line_count();
  auto r = lstest::run({livesplice(), "apply", "--pid", std::to_string(prog.pid()), update, "--json"}, o);
  ASSERT_EQ(r.status, 0) << r.describe();
  Json applied = r.json();
  const Json& b = applied.at("borrowed");
  EXPECT_EQ("parked thread " + std::to_string(b.at("thread").get<int>()), parked) << applied.dump(2);
  EXPECT_FALSE(b.at("slept").get<bool>()) << applied.dump(2);
  EXPECT_EQ(b.at("kept_us").get<double>(), b.at("held_us").get<double>()) << applied.dump(2);
  EXPECT_EQ(applied.at("pause_phases_us").at("map").get<double>(), b.at("held_us").get<double>()) << applied.dump(2);
  prog.wait_for("signal in the parked thread", mark);   // delivered once let go
  prog.wait_for("sentinel 2002", mark);
  expect_alive_and_running(prog);
  undo_ok(prog);
}

// A process at its thread limit cannot have a parked thread: clone fails with EAGAIN,
// and the borrowed thread makes every call itself, as before parked threads. Apply
// must still succeed, and say why it borrowed for the whole batch.
TEST_F(Borrow, AtTheThreadLimitTheBorrowedThreadMakesEveryCall) {
  Program& prog = start({"nproc"});
  prog.wait_for("at the thread limit");

  Json applied = apply_ok(prog, update);
  const Json& parked = applied.at("parked");
  EXPECT_EQ(parked.at("calls").get<int>(), 0) << applied.dump(2);
  EXPECT_NE(parked.at("why_not").get<std::string>().find("Resource temporarily unavailable"), std::string::npos)
      << applied.dump(2);
  // The ledger's copy and the code: memfd_create, mmap, close each at least, and the
  // clone that failed.
  EXPECT_GE(applied.at("borrowed").at("calls").get<int>(), 7) << applied.dump(2);
  prog.wait_for("sentinel 2002", prog.line_count());
  expect_alive_and_running(prog);
  undo_ok(prog);
  prog.wait_for("sentinel 1001", prog.line_count());
  expect_alive_and_running(prog);
}

}  // namespace
