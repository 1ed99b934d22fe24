// Updates stacked on updates. cases/stack prints alpha() and beta(); fix1.patch changes
// alpha (100 → 101); fix2.patch, written against the tree with fix1 applied, changes
// alpha again (101 → 102) and beta (200 → 201). So update 2 must be matched against
// update 1's new code of alpha — and update 1 cannot be undone while update 2, which
// stands on it, is applied.
#include <gtest/gtest.h>

#include <filesystem>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Stacked : public PtraceTest {
 protected:
  void SetUp() override {
    PtraceTest::SetUp();
    if (HasFatalFailure()) return;
    std::string src = build_case("stack", tmp / "src");
    // Tree 1: the source with fix1 applied, which fix2 is written against.
    std::filesystem::copy(case_dir("stack"), tmp / "tree1", std::filesystem::copy_options::recursive);
    patch_tree(tmp / "tree1", case_dir("stack") + "/fix1.patch");
    prog = std::make_unique<Program>(std::vector<std::string>{src + "/prog"});
    prog->wait_for("alpha 100 beta 200");
    u1 = create_update(src, case_dir("stack") + "/fix1.patch", tmp / "fix1.lsu");
    u2 = create_update(tmp / "tree1", case_dir("stack") + "/fix2.patch", tmp / "fix2.lsu");
  }

  // Waits until the program prints `text`, and then only `text`.
  void expect_now(const std::string& text) {
    size_t first = prog->wait_for(text, prog->line_count());
    prog->wait_for_count(text, 5, first);
    for (const auto& l : prog->lines(first)) ASSERT_EQ(l, text) << prog->tail();
    expect_alive_and_running(*prog);
  }

  std::string apply(const std::string& update) { return apply_ok(*prog, update)["id"].get<std::string>(); }

  TempDir tmp;
  std::unique_ptr<Program> prog;
  std::string u1, u2;
};

// 12. Apply 1, apply 2, undo 1 (refused: 2 stands on it), undo 2, undo 1.
TEST_F(Stacked, UndoInReverseOrder) {
  std::string id1 = apply(u1);
  expect_now("alpha 101 beta 200");
  std::string id2 = apply(u2);
  expect_now("alpha 102 beta 201");

  RunResult refused = ls({"undo", "--pid", std::to_string(prog->pid()), id1.substr(0, 8)});
  EXPECT_NE(refused.status, 0) << "undo of the older update must be refused while the newer is applied\n"
                               << refused.describe();
  EXPECT_NE(refused.err.find(id2.substr(0, 8)), std::string::npos) << "the message must name the newer update\n"
                                                                   << refused.describe();
  expect_now("alpha 102 beta 201");

  undo_ok(*prog, {id2.substr(0, 8)});
  expect_now("alpha 101 beta 200");
  undo_ok(*prog, {id1.substr(0, 8)});
  expect_now("alpha 100 beta 200");
  EXPECT_TRUE(maps_with(prog->pid(), "livesplice:").empty());
}

// 13. undo --all takes both out, newest first.
TEST_F(Stacked, UndoAll) {
  std::string id1 = apply(u1);
  std::string id2 = apply(u2);
  expect_now("alpha 102 beta 201");
  Json undone = undo_ok(*prog, {"--all"});
  ASSERT_EQ(undone.size(), 2u) << undone.dump(2);
  EXPECT_EQ(undone[0].value("id", ""), id2) << "newest first";
  EXPECT_EQ(undone[1].value("id", ""), id1);
  expect_now("alpha 100 beta 200");
  EXPECT_TRUE(view_updates(*prog).empty());
  EXPECT_TRUE(maps_with(prog->pid(), "livesplice:").empty()) << maps_with(prog->pid(), "livesplice:").front();
  // Nothing left to undo is not an error for --all.
  EXPECT_TRUE(undo_ok(*prog, {"--all"}).empty());
}

// 14. view after every step of 12: how many updates, which, in order (oldest first),
// none pending, and what each replaced.
TEST_F(Stacked, ViewAfterEachStep) {
  using Ids = std::vector<std::string>;
  EXPECT_EQ(view_ids(*prog), Ids{});
  std::string id1 = apply(u1);
  EXPECT_EQ(view_ids(*prog), Ids{id1});
  std::string id2 = apply(u2);
  EXPECT_NE(id1, id2);
  EXPECT_EQ(view_ids(*prog), (Ids{id1, id2}));

  Json updates = view_updates(*prog);
  ASSERT_EQ(updates.size(), 2u);
  for (const auto& u : updates) {
    EXPECT_FALSE(u.value("pending", false)) << u.dump(2);
    EXPECT_GT(u["pause_us"].get<double>(), 0) << u.dump(2);
    EXPECT_FALSE(u["applied_at"].get<std::string>().empty());
  }
  EXPECT_TRUE(names_function(updates[0]["functions"], "alpha")) << updates.dump(2);
  EXPECT_FALSE(names_function(updates[0]["functions"], "beta")) << updates.dump(2);
  EXPECT_TRUE(names_function(updates[1]["functions"], "alpha")) << updates.dump(2);
  EXPECT_TRUE(names_function(updates[1]["functions"], "beta")) << updates.dump(2);

  // The text form names both, oldest first.
  RunResult text = ls({"view", "--pid", std::to_string(prog->pid())});
  ASSERT_EQ(text.status, 0) << text.describe();
  size_t at1 = text.out.find(id1.substr(0, 8)), at2 = text.out.find(id2.substr(0, 8));
  EXPECT_TRUE(at1 != std::string::npos && at2 != std::string::npos && at1 < at2) << text.describe();

  RunResult refused = ls({"undo", "--pid", std::to_string(prog->pid()), id1.substr(0, 8)});
  EXPECT_NE(refused.status, 0) << refused.describe();
  EXPECT_EQ(view_ids(*prog), (Ids{id1, id2})) << "a refused undo changes nothing";
  undo_ok(*prog, {id2.substr(0, 8)});
  EXPECT_EQ(view_ids(*prog), Ids{id1});
  undo_ok(*prog, {id1.substr(0, 8)});
  EXPECT_EQ(view_ids(*prog), Ids{});
  expect_now("alpha 100 beta 200");
}

}  // namespace
