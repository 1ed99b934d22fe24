// Shadow data (include/livesplice/patch.h) in a running process, on cases/hooks: the
// fix gives `level` a field it did not have — a shadow variable allocated and set by its
// APPLY hook while the thread is stopped, read by the new code on every call, freed by
// its UNDO hook — and a second update, stacked on it, finds the same variable under the
// same id and raises it. The new code prints 2000 + level + the field, or + 100 if it
// finds none (so "2101" would be the new code missing the field).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Shadow : public PtraceTest {
 protected:
  void SetUp() override {
    PtraceTest::SetUp();
    if (HasFatalFailure()) return;
    build_case("hooks", src());
  }
  std::string src() const { return tmp / "src"; }

  // Waits until the program prints `text`, then expects only `text` from its first sight on.
  void expect_now(Program& prog, const std::string& text) {
    size_t first = prog.wait_for(text, prog.line_count());
    prog.wait_for_count(text, 3, first);
    for (const auto& l : prog.lines(first)) EXPECT_EQ(l.rfind(text, 0), 0u) << l;
    expect_alive_and_running(prog);
  }
  void expect_never(Program& prog, size_t mark, const std::string& text) {
    for (const auto& l : prog.lines(mark)) EXPECT_EQ(l.find(text), std::string::npos) << l;
  }

  TempDir tmp;
};

// The field is there before the new code first runs (never 2101), and gone with undo.
TEST_F(Shadow, FieldSetByApplyHookReadByNewCode) {
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  const std::string update = create_update(src(), case_dir("hooks") + "/shadow.patch", tmp / "shadow.lsu");
  size_t before = prog.line_count();
  apply_ok(prog, update);
  expect_now(prog, "sentinel 2006");
  expect_never(prog, before, "sentinel 2101");
  undo_ok(prog, {"--all"});
  expect_now(prog, "sentinel 1001");
  EXPECT_TRUE(view_updates(prog).empty());
}

// Update 2, stacked on update 1, reads and raises the variable update 1 allocated (the
// same table, the same id): 3007, never 3101 (a table of its own) nor 3006 (its hook
// not run). Undoing 2 lowers it again under update 1's code; undoing 1 frees it.
TEST_F(Shadow, StackedUpdatesShareOneId) {
  std::filesystem::copy(case_dir("hooks"), tmp / "tree1", std::filesystem::copy_options::recursive);
  patch_tree(tmp / "tree1", case_dir("hooks") + "/shadow.patch");
  Program prog({src() + "/prog"});
  prog.wait_for("sentinel 1001");
  const std::string u1 = create_update(src(), case_dir("hooks") + "/shadow.patch", tmp / "shadow.lsu");
  const std::string u2 =
      create_update(tmp / "tree1", case_dir("hooks") + "/shadow-stacked.patch", tmp / "shadow-stacked.lsu");

  size_t before = prog.line_count();
  const std::string id1 = apply_ok(prog, u1)["id"].get<std::string>();
  expect_now(prog, "sentinel 2006");
  const std::string id2 = apply_ok(prog, u2)["id"].get<std::string>();
  expect_now(prog, "sentinel 3007");
  expect_never(prog, before, "sentinel 3101");
  expect_never(prog, before, "sentinel 3006");

  undo_ok(prog, {id2.substr(0, 8)});
  expect_now(prog, "sentinel 2006");
  undo_ok(prog, {id1.substr(0, 8)});
  expect_now(prog, "sentinel 1001");
  EXPECT_TRUE(view_updates(prog).empty());
  expect_never(prog, before, "sentinel 2101");
}

}  // namespace
