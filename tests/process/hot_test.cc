// Hot functions: updates to a function the threads are nearly always inside. Stopping
// everything and retrying would never find it empty; the hot wait traps the entries and
// lets the threads run out (safety.h). Each case checks what must hold around it: the
// program itself aborts if the code it runs is changed under it (cases/hot), and a
// wait that cannot end (a lock, a function never left) is refused, naming who is where.
#include <gtest/gtest.h>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Hot : public PtraceTest {
 protected:
  // Applies and undoes `cycles` times with THREADS workers inside hot() ~95% of the
  // time: each must succeed at once (no retries) and the program must never see its
  // code change while it runs it (it would print VIOLATION and abort).
  void cycles(int threads, int cycles) {
    std::string src = build_case("hot", tmp / ("src" + std::to_string(threads)));
    Program prog({src + "/prog", std::to_string(threads)});
    prog.wait_for("hot 1001", 0, 10s);
    std::string update = tmp / ("fix" + std::to_string(threads) + ".lsu");
    create_update(src, case_dir("hot") + "/fix.patch", update);
    for (int n = 0; n < cycles; ++n) {
      Json applied = apply_ok(prog, update, {"--retries", "0"});
      size_t mark = prog.line_count();
      prog.wait_for("hot 2002", mark, 10s);
      undo_ok(prog, {"--retries", "0"});
      mark = prog.line_count();
      prog.wait_for("hot 1001", mark, 10s);
    }
    EXPECT_FALSE(prog.find("VIOLATION")) << prog.tail();
    expect_alive_and_running(prog);
  }

  TempDir tmp;
};

// W0 with one worker: today's check alone finds it inside 95% of the time.
TEST_F(Hot, OneWorkerInsideAppliesAndUndoes) { cycles(1, 6); }

// W0 with 16 workers on two CPUs: some worker is always inside.
TEST_F(Hot, SixteenWorkersInsideApplyAndUndo) { cycles(16, 6); }

// A thread inside waiter() waits for a lock the other thread holds while it calls
// holder(): with both entries trapped the holder waits at holder()'s entry and the
// waiter can never leave. Refused when the hot wait ends, naming both; nothing changed
// and both threads go on.
TEST_F(Hot, LockHeldAtATrappedEntryIsRefusedNamingBoth) {
  std::string src = build_case("entrylock", tmp / "src");
  Program prog({src + "/prog"});
  std::string w = prog.line(prog.wait_for("waiter thread "));
  std::string h = prog.line(prog.wait_for("holder thread "));
  std::string waiter_tid = w.substr(w.rfind(' ') + 1), holder_tid = h.substr(h.rfind(' ') + 1);
  prog.wait_for("holder 1000");
  create_update(src, case_dir("entrylock") + "/fix.patch", tmp / "fix.lsu");

  RunResult r = apply_expect(prog, tmp / "fix.lsu", 2, {"--retries", "1", "--hot-wait", "100"});
  EXPECT_NE(r.err.find("thread " + waiter_tid), std::string::npos) << "must name the waiter\n" << r.describe();
  EXPECT_NE(r.err.find("waiter"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("thread " + holder_tid + " waits at the entry of"), std::string::npos)
      << "must name the holder, waiting at an entry\n" << r.describe();
  EXPECT_NE(r.err.find("holder"), std::string::npos) << r.describe();
  EXPECT_TRUE(view_updates(prog).empty()) << view_updates(prog).dump(2);
  expect_alive_and_running(prog);
  size_t mark = prog.line_count();
  prog.wait_for_count("holder ", 2, mark);
  // The holder still runs the old holder() (+1 a call: the count printed every 1000
  // calls goes up by 1000).
  std::string a = prog.line(prog.wait_for("holder ", mark)), b = prog.line(prog.wait_for("holder ", mark + 1));
  EXPECT_EQ(std::stol(b.substr(7)) - std::stol(a.substr(7)), 1000) << a << "\n" << b;
}

// A thread always inside deeper(), 2000 calls of itself deep: with the entry trapped it waits
// there with its own frames inside, and can never leave. Refused when the hot wait
// ends, naming it both inside and waiting at the entry; it goes on, old code.
TEST_F(Hot, RecursiveCallerWaitingAtItsOwnEntryIsRefused) {
  std::string src = build_case("recursive", tmp / "src");
  Program prog({src + "/prog"});
  std::string w = prog.line(prog.wait_for("worker thread "));
  std::string tid = w.substr(w.rfind(' ') + 1);
  prog.wait_for("deeper ", 0, 10s);   // a descent takes 1 s
  create_update(src, case_dir("recursive") + "/fix.patch", tmp / "fix.lsu");

  RunResult r = apply_expect(prog, tmp / "fix.lsu", 2, {"--retries", "0", "--hot-wait", "100"});
  EXPECT_NE(r.err.find("thread " + tid), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("deeper"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("thread " + tid + " waits at the entry of"), std::string::npos)
      << "it waits at its own entry\n" << r.describe();
  EXPECT_TRUE(view_updates(prog).empty()) << view_updates(prog).dump(2);
  expect_alive_and_running(prog);
  size_t mark = prog.line_count();
  std::string line = prog.line(prog.wait_for("deeper ", mark, 10s));
  EXPECT_EQ(line, "deeper 2001") << "the old deeper() (+1 a level, 2001 levels)";
}

}  // namespace
