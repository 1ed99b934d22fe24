// C++ programs. cases/cxx_unwind throws from, and unwinds through, the functions its
// update replaces, and takes a backtrace inside one: new code must unwind exactly like
// the code it replaces, so its unwind tables (FDEs and LSDAs) travel in the update and
// are registered with the process's unwinder while it is applied (process/frames.h).
// Without them the first exception in new code ends the program in std::terminate.
#include <gtest/gtest.h>

#include <regex>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Cxx : public PtraceTest {
 protected:
  TempDir tmp;
};

// The depth printed on line `l` ("... depth N").
int depth_of(const std::string& l) {
  std::smatch m;
  if (!std::regex_search(l, m, std::regex("depth (\\d+)$"))) throw Failure("no depth in: " + l);
  return std::stoi(m[1]);
}

// Every line from `from` on, once `count` of them say `marker`, is one of the version
// `marker` names: the exception thrown in lookup() caught, the one thrown in thrower()
// caught after unwinding through relay(), and backtrace() as deep as `depth`.
void expect_version(Program& prog, const std::string& marker, int depth, size_t from) {
  size_t first = prog.wait_for(marker, from, 10s);
  prog.wait_for_count(marker, 5, first, 10s);
  for (const auto& l : prog.lines(first)) {
    EXPECT_NE(l.find("caught [" + marker + " no key three] relayed [thrower "), std::string::npos) << prog.tail();
    EXPECT_EQ(depth_of(l), depth) << l << "\n" << prog.tail();
  }
  expect_alive_and_running(prog);
}

// Thrown in new code and caught in old; thrown in old code through new; backtrace()
// from new code as deep as from the old; a thread cancelled inside new code unwound to
// its caller's destructor; undone, the old code throws as before.
TEST_F(Cxx, NewCodeUnwindsLikeTheOld) {
  std::string src = build_case("cxx_unwind", tmp / "src");
  Program::Options options;
  options.stdin_pipe = true;
  Program prog({src + "/prog"}, options);
  size_t at = prog.wait_for("caught [old: no key three]");
  const int old_depth = depth_of(prog.line(at));
  std::string update = create_update(src, case_dir("cxx_unwind") + "/fix.patch", tmp / "fix.lsu");

  Json applied = apply_ok(prog, update);
  EXPECT_TRUE(names_function(applied["functions"], "_Z6lookupRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"))
      << applied.dump();
  expect_version(prog, "new:", old_depth + 1000, at);

  // The worker waits in wait_turn's new code nearly all the time; its cancellation
  // unwinds from there through worker(), whose guard says so.
  size_t before_cancel = prog.line_count();
  prog.write_stdin("cancel\n");
  size_t joined = prog.wait_for("worker joined", before_cancel);
  auto released = prog.find("worker released", before_cancel);
  EXPECT_TRUE(released && *released < joined) << "the cancelled thread's guard was not destroyed\n" << prog.tail();
  expect_alive_and_running(prog);

  size_t before_undo = prog.line_count();
  undo_ok(prog);
  expect_version(prog, "old:", old_depth, before_undo);
}

}  // namespace

namespace {

// A virtual method replaced: the vtable still holds the old entry, and the jump written
// there takes every call through it to the new code; undone, the old code again.
TEST_F(Cxx, VirtualMethodThroughItsVtable) {
  std::string src = build_case("cxx_virtual", tmp / "src");
  Program prog({src + "/prog"});
  prog.wait_for("area 49");
  std::string update = create_update(src, case_dir("cxx_virtual") + "/fix.patch", tmp / "fix.lsu");
  update_cycle(prog, update, "area 49", "area 1049", "_ZNK6Square4areaEv");
}

}  // namespace

namespace {

// A class template's method instantiated in two objects: each rebuilt object brings its
// new copy of the weak definition, both match the one copy the linker kept, and that
// one is replaced once (it used to be refused: two jumps at one site).
TEST_F(Cxx, TemplateInstantiatedInTwoObjects) {
  std::string src = build_case("cxx_template", tmp / "src");
  Program prog({src + "/prog"});
  prog.wait_for("a 20 b 21");
  std::string update = create_update(src, case_dir("cxx_template") + "/fix.patch", tmp / "fix.lsu");
  update_cycle(prog, update, "a 20 b 21", "a 30 b 31", "_ZNK3BoxIiE3getEv");
}

}  // namespace
