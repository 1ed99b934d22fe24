// Updates livesplice must refuse, leaving the process exactly as it was: a function
// that never leaves a thread's stack, and an update made from a source tree that is not
// the one the running program was built from. Both exit 2 ("cannot be applied safely")
// with a message that says why, and the process goes on with its old code, untouched:
// not stopped, not traced, no update in its ledger, none of the update's code mapped.
#include <gtest/gtest.h>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Refuse : public PtraceTest {
 protected:
  // Old behaviour goes on, new never shows, no update recorded or mapped.
  void expect_untouched(Program& prog, const std::string& old_text, const std::string& new_text) {
    expect_alive_and_running(prog);
    size_t mark = prog.line_count();
    prog.wait_for_count(old_text, 5, mark);
    EXPECT_FALSE(prog.find(new_text)) << prog.tail();
    EXPECT_TRUE(view_updates(prog).empty()) << view_updates(prog).dump(2);
    EXPECT_TRUE(maps_with(prog.pid(), "livesplice:").empty()) << maps_with(prog.pid(), "livesplice:").front();
  }

  TempDir tmp;
};

// 10. spin_forever() loops forever in the worker thread: a return address into it is
// always on that thread's stack. Apply gives up after its retries and names the thread
// and the function, found as a real frame by CFI unwinding.
TEST_F(Refuse, FunctionAlwaysOnStack) {
  std::string src = build_case("forever", tmp / "src");
  Program prog({src + "/prog"});
  std::string hello = prog.line(prog.wait_for("worker thread "));
  std::string worker_tid = hello.substr(hello.rfind(' ') + 1);
  prog.wait_for("sentinel 1001");
  create_update(src, case_dir("forever") + "/fix.patch", tmp / "fix.lsu");

  RunResult r = apply_expect(prog, tmp / "fix.lsu", 2, {"--retries", "3", "--retry-delay", "10"});
  EXPECT_NE(r.err.find("thread " + worker_tid), std::string::npos) << "the message must name the worker thread "
                                                                   << worker_tid << "\n" << r.describe();
  EXPECT_NE(r.err.find("spin_forever"), std::string::npos) << "the message must name the function\n" << r.describe();
  // A real frame, found by CFI (or the PC itself), never by the conservative fallback.
  EXPECT_TRUE(r.err.find("unwound with CFI") != std::string::npos || r.err.find("is executing") != std::string::npos)
      << "the worker's real frame must be found by unwinding\n" << r.describe();
  EXPECT_NE(r.err.find("4 attempts"), std::string::npos) << "1 attempt + 3 retries\n" << r.describe();
  Json j = r.json();
  EXPECT_EQ(j.value("applied", true), false) << r.describe();
  expect_untouched(prog, "sentinel 1001", "sentinel 2002");
}

// 11. The running program was built from tree A; the update from tree B, where
// sentinel() returns 1077 instead of 1001. RunResult-pre matching must refuse it and show the
// instruction it expected (from B) and the one it found (in A's running code).
TEST_F(Refuse, RunPreMismatch) {
  std::string a = build_case("mismatch", tmp / "a");
  std::string b = tmp / "b";
  std::filesystem::copy(case_dir("mismatch"), b, std::filesystem::copy_options::recursive);
  patch_tree(b, case_dir("mismatch") + "/variant.patch");
  Program prog({a + "/prog"});
  prog.wait_for("sentinel 1001");
  create_update(b, case_dir("mismatch") + "/fix.patch", tmp / "fix.lsu");

  RunResult r = apply_expect(prog, tmp / "fix.lsu", 2);
  EXPECT_NE(r.err.find("sentinel"), std::string::npos) << "the message must name the function\n" << r.describe();
  EXPECT_NE(r.err.find("expected"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("found"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("0x435"), std::string::npos) << "expected: B's constant 1077 (0x435)\n" << r.describe();
  EXPECT_NE(r.err.find("0x3e9"), std::string::npos) << "found: A's constant 1001 (0x3e9)\n" << r.describe();
  expect_untouched(prog, "sentinel 1001", "sentinel 2002");
}

}  // namespace
