// Hooks (include/livesplice/patch.h) in a running process: cases/hooks, one thread
// printing `sentinel 1000+level`, whose fix prints `2000+level` and counts `level` in
// halves — existing data its APPLY hook converts while the thread is stopped, and its
// UNDO hook converts back. The other patches of the case are hooks that refuse, crash
// or never return, and one that calls the function it replaces (refused by create).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Hooks : public PtraceTest {
 protected:
  void SetUp() override {
    PtraceTest::SetUp();
    build_case("hooks", src());
  }
  std::string src() const { return tmp / "src"; }
  std::string make(const std::string& patch) {
    std::string out = tmp / (patch + ".lsu");
    create_update(src(), case_dir("hooks") + "/" + patch, out);
    return out;
  }
  // The process still runs the original code on the original data, untraced, and
  // nothing of livesplice is left in it.
  void expect_unchanged(Program& prog) {
    expect_alive_and_running(prog);
    size_t mark = prog.line_count();
    prog.wait_for_count("sentinel 1001", 3, mark);
    for (const auto& l : prog.lines(mark)) EXPECT_EQ(l.find("sentinel 1002"), std::string::npos) << l;
    EXPECT_TRUE(view_updates(prog).empty());
    EXPECT_TRUE(maps_with(prog.pid(), "livesplice:").empty()) << "the update's code is still mapped";
  }

  TempDir tmp;
};

// The whole life: pre_apply before the stop, apply converts the data while the thread is
// stopped (so neither code ever sees the other's data: never 2001 nor 1002), post_apply
// after; and the same on the way back.
TEST_F(Hooks, ConvertDataWhileStoppedAndBack) {
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  const std::string update = make("fix.patch");
  Json info = ls({"info", update, "--json"}).json();
  ASSERT_EQ(info["hooks"].size(), 6u) << info.dump(2);
  std::map<std::string, std::string> by_kind;
  for (const auto& h : info["hooks"]) by_kind[h["kind"]] = h["name"];
  EXPECT_EQ(by_kind["apply"], "to_halves") << info.dump(2);
  EXPECT_EQ(by_kind["post_undo"], "undone") << info.dump(2);

  size_t before = prog.line_count();
  Json applied = apply_ok(prog, update);
  ASSERT_EQ(applied["hooks"].size(), 3u) << applied.dump(2);   // pre_apply, apply, post_apply: in that order
  EXPECT_NE(applied["hooks"][1]["hook"].get<std::string>().find("apply hook sentinel.o:to_halves"), std::string::npos)
      << applied.dump(2);
  size_t pre = prog.wait_for("hook pre_apply", before);
  size_t first_new = prog.wait_for("sentinel 2002", before);
  size_t post = prog.wait_for("hook post_apply", before);
  EXPECT_LT(pre, first_new);
  prog.wait_for_count("sentinel 2002", 3, first_new);
  for (const auto& l : prog.lines(before)) {
    EXPECT_EQ(l.find("sentinel 2001"), std::string::npos) << "new code ran on unconverted data: " << l;
    EXPECT_EQ(l.find("sentinel 1002"), std::string::npos) << "old code ran on converted data: " << l;
  }
  (void)post;

  size_t undo_mark = prog.line_count();
  undo_ok(prog);
  prog.wait_for("hook pre_undo", undo_mark);
  prog.wait_for("hook post_undo", undo_mark);
  size_t back = prog.wait_for("sentinel 1001", undo_mark);
  prog.wait_for_count("sentinel 1001", 3, back);
  for (const auto& l : prog.lines(undo_mark)) {
    EXPECT_EQ(l.find("sentinel 1002"), std::string::npos) << "old code ran on converted data: " << l;
    EXPECT_EQ(l.find("sentinel 2001"), std::string::npos) << "new code ran on data converted back: " << l;
  }
  expect_unchanged(prog);
}

// A pre_apply hook's nonzero value refuses the apply: exit 2, the value named, nothing
// changed.
TEST_F(Hooks, PreApplyRefuses) {
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  RunResult r = apply_expect(prog, make("refuse.patch"), 2);
  EXPECT_NE(r.out.find("pre_apply hook sentinel.o:not_now returned 7"), std::string::npos) << r.out << r.err;
  expect_unchanged(prog);
}

// An apply hook that faults: the fault is never delivered, the process runs on
// unpatched, and the reason names the hook.
TEST_F(Hooks, CrashingHookLeavesProcessUnpatched) {
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  RunResult r = apply_expect(prog, make("crash.patch"), 2);
  EXPECT_NE(r.out.find("apply hook sentinel.o:to_halves crashed: Segmentation fault"), std::string::npos)
      << r.out << r.err;
  expect_unchanged(prog);
}

// An apply hook that never returns is abandoned at the time limit.
TEST_F(Hooks, HangingHookIsAbandoned) {
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  RunResult r = apply_expect(prog, make("hang.patch"), 2, {"--hook-timeout", "200"});
  EXPECT_NE(r.out.find("apply hook sentinel.o:to_halves did not return within 200 ms"), std::string::npos)
      << r.out << r.err;
  expect_unchanged(prog);
}

// A hook that calls the function its update replaces would trap on that function's
// closed entry: create refuses it, naming both.
TEST_F(Hooks, HookCallingReplacedFunctionIsRefused) {
  RunResult r = ls({"create", "--source", src(), "--patch", case_dir("hooks") + "/calls-replaced.patch", "-o",
                    tmp / "refused.lsu"},
                   180s);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("apply hook calls sentinel, which this update replaces"), std::string::npos) << r.err;
}

// LIVESPLICE_IGNORE_FUNCTION(main): main's change (a start-up check) is left out, so the
// update applies although main is on the stack for ever; info lists it.
TEST_F(Hooks, IgnoredFunctionIsLeftOut) {
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  const std::string update = make("ignore.patch");
  Json info = ls({"info", update, "--json"}).json();
  ASSERT_EQ(info["ignored"].size(), 1u) << info.dump(2);
  EXPECT_EQ(info["ignored"][0]["name"], "main");
  for (const auto& f : info["functions"]) EXPECT_NE(f["name"], "main") << info.dump(2);
  EXPECT_NE(ls({"info", update}).out.find("ignored"), std::string::npos);
  update_cycle(prog, update, "sentinel 1001", "sentinel 2001", "sentinel");
}

// A changed initialiser is refused, saying how a hook would lift the refusal; with the
// hook and LIVESPLICE_CONVERTED the update is made, and the running program's value is
// converted while it is stopped (never the new code on the old value).
TEST_F(Hooks, ConvertedInitialiserIsAccepted) {
  RunResult refused = ls({"create", "--source", src(), "--patch", case_dir("hooks") + "/unconverted.patch", "-o",
                          tmp / "refused.lsu"},
                         180s);
  EXPECT_EQ(refused.status, 2) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("LIVESPLICE_CONVERTED(\"level\")"), std::string::npos) << refused.err;

  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  const std::string update = make("converted.patch");
  size_t before = prog.line_count();
  apply_ok(prog, update);
  size_t first_new = prog.wait_for("sentinel 2002", before);
  prog.wait_for_count("sentinel 2002", 3, first_new);
  for (const auto& l : prog.lines(before))
    EXPECT_EQ(l.find("sentinel 2001"), std::string::npos) << "new code ran on the old value: " << l;
}

}  // namespace
