// The safety check unwinds stacks with CFI and scans only what CFI cannot cover.
//
// An idle process whose live frame holds dead words equal to a return address into
// the replaced function (cases/deadword, the idle ssh ControlMaster of issue 11): the
// conservative scan refused it for ever; its real frames hold no such address, and the
// update applies.
// A real frame of a replaced function below new code, which has no CFI
// (cases/nocfi: update 1 makes inner() never return, update 2 replaces its caller
// outer()): CFI stops at the new code, the rest of the stack is scanned, and the
// refusal says so.
// FunctionAlwaysOnStack (refuse_test.cc) keeps a real frame found by CFI refusing.
#include <gtest/gtest.h>

#include <filesystem>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Unwind : public PtraceTest {
 protected:
  TempDir tmp;
};

TEST_F(Unwind, DeadWordInLiveFrameDoesNotBlock) {
  std::string src = build_case("deadword", tmp / "src");
  Program prog({src + "/prog"}, Program::Options{.stdin_pipe = true});
  prog.wait_for("ready");
  prog.write_stdin("first\n");
  prog.wait_for("answer 1001");
  std::string stale = prog.line(prog.wait_for("stale words hold "));
  ASSERT_NE(stale, "stale words hold 0") << prog.tail();
  create_update(src, case_dir("deadword") + "/fix.patch", tmp / "fix.lsu");
  wait_in_syscall(prog.pid(), {0});   // read: idle, as it will stay

  Json applied = apply_ok(prog, tmp / "fix.lsu", {"--retries", "3", "--retry-delay", "10"});
  EXPECT_TRUE(names_function(applied["functions"], "answer")) << applied.dump(2);
  expect_alive_and_running(prog);
  size_t mark = prog.line_count();
  prog.write_stdin("second\n");
  prog.wait_for("answer 2001", mark);
}

TEST_F(Unwind, RealFrameBelowCodeWithoutCfiBlocks) {
  std::string src = build_case("nocfi", tmp / "src");
  std::filesystem::copy(case_dir("nocfi"), tmp / "tree1", std::filesystem::copy_options::recursive);
  patch_tree(tmp / "tree1", case_dir("nocfi") + "/fix1.patch");
  Program prog({src + "/prog"});
  std::string hello = prog.line(prog.wait_for("worker thread "));
  std::string worker_tid = hello.substr(hello.rfind(' ') + 1);
  prog.wait_for("outer 100");
  std::string u1 = create_update(src, case_dir("nocfi") + "/fix1.patch", tmp / "fix1.lsu");
  std::string u2 = create_update(tmp / "tree1", case_dir("nocfi") + "/fix2.patch", tmp / "fix2.lsu");

  apply_ok(prog, u1);
  prog.wait_for("inner forever");
  RunResult r = apply_expect(prog, u2, 2, {"--retries", "2", "--retry-delay", "10"});
  for (const std::string& needle : {"thread " + worker_tid + ": no CFI for pc", std::string("stack scanned conservatively"),
                                    std::string("points into"), std::string("outer")})
    EXPECT_NE(r.err.find(needle), std::string::npos) << "the refusal must say '" << needle << "'\n" << r.describe();
  expect_alive_and_running(prog);
  EXPECT_FALSE(prog.find("outer 200")) << prog.tail();
}

}  // namespace
