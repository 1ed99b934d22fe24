// The thread apply borrows for its system calls (mapping the new code, creating the
// ledger) is kept from running while it makes them: it must be one that is not serving,
// lent for one call per mapping (parked.h), and the pause apply reports must cover that
// time as well as the splice's stop.
#include <gtest/gtest.h>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Borrow : public PtraceTest {
 protected:
  TempDir tmp;
};

// The main thread (the lowest TID, which apply used to borrow) serves, waking every
// millisecond; a second thread is parked in pause(). Apply borrows the parked one, and
// its pause is the longest of the two phases it reports.
TEST_F(Borrow, ParkedThreadNotTheServingOne) {
  std::string src = build_case("parked", tmp / "src");
  Program prog({src + "/prog"});
  std::string parked = prog.line(prog.wait_for("parked thread "));
  std::string serving = prog.line(prog.wait_for("serving thread "));
  prog.wait_for_count("sentinel 1001", 20);   // the serving thread has woken a few hundred times
  std::string update = create_update(src, case_dir("parked") + "/fix.patch", tmp / "fix.lsu");

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

}  // namespace
