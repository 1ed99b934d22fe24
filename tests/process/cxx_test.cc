// C++ programs. cases/cxx_unwind throws from, and unwinds through, the functions its
// update replaces, and takes a backtrace inside one: new code must unwind exactly like
// the code it replaces, so its unwind tables (FDEs and LSDAs) travel in the update and
// are registered with the process's unwinder while it is applied (process/frames.h).
// Without them the first exception in new code ends the program in std::terminate.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Cxx : public PtraceTest {
 protected:
  TempDir tmp;

  // Case `name` built and run until it prints `old_text`; its fix.patch made into an
  // update and taken through update_cycle (steps.h), which replaces `function`.
  void cycle(const std::string& name, const std::string& old_text, const std::string& new_text,
             const std::string& function) {
    std::string src = build_case(name, tmp / "src");
    Program prog({src + "/prog"});
    prog.wait_for(old_text);
    std::string update = create_update(src, case_dir(name) + "/fix.patch", tmp / "fix.lsu");
    update_cycle(prog, update, old_text, new_text, function);
  }
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
  cycle("cxx_virtual", "area 49", "area 1049", "_ZNK6Square4areaEv");
}

}  // namespace

namespace {

// A class template's method instantiated in two objects: each rebuilt object brings its
// new copy of the weak definition, both match the one copy the linker kept, and that
// one is replaced once (it used to be refused: two jumps at one site).
TEST_F(Cxx, TemplateInstantiatedInTwoObjects) {
  cycle("cxx_template", "a 20 b 21", "a 30 b 31", "_ZNK3BoxIiE3getEv");
}

}  // namespace

namespace {

// An inline function from a header changed: no copy of it runs on its own (each caller
// has the body inlined), so the update replaces its caller, report().
TEST_F(Cxx, InlineFunctionChangedThroughItsCaller) {
  cycle("cxx_inline", "value 42", "value 7042", "_Z6reporti");
}

// A lambda inside a function: its code is the closure's invoker, a local function named
// after the enclosing one, which is what the update replaces.
TEST_F(Cxx, LambdaInsideAFunction) {
  cycle("cxx_lambda", "sum 12", "sum 3012", "_ZNSt17_Function_handlerIFiiEZ10sum_scalediEUliE_E9_M_invokeERKSt9_Any_dataOi");
}

// The tickets printed from line `from` on, in order.
std::vector<long> tickets(const Program& prog, size_t from) {
  std::vector<long> v;
  for (const auto& l : prog.lines(from))
    if (l.starts_with("ticket ")) v.push_back(std::stol(l.substr(7)));
  return v;
}

// Every step between consecutive tickets is `before` up to one point and `after` from
// there on (the point being where the update took effect); returns whether one such
// point exists, with a description otherwise.
::testing::AssertionResult counts_on(const std::vector<long>& v, long before, long after) {
  size_t i = 1;
  while (i < v.size() && v[i] - v[i - 1] == before) ++i;
  const size_t switched = i;
  while (i < v.size() && v[i] - v[i - 1] == after) ++i;
  if (switched < v.size() && i == v.size()) return ::testing::AssertionSuccess();
  std::string seq;
  for (size_t k = switched > 3 ? switched - 3 : 0; k < std::min(v.size(), i + 3); ++k) seq += std::to_string(v[k]) + " ";
  return ::testing::AssertionFailure() << "steps of " << before << " then " << after << " expected; around the change: " << seq;
}

// A function-local static object (constructed at the first call, through its guard
// variable) in a replaced function: the new code counts on in the running program's
// object, never constructs a fresh one; undone, the old code counts on in it too.
TEST_F(Cxx, StaticLocalKeepsItsState) {
  std::string src = build_case("cxx_static", tmp / "src");
  Program prog({src + "/prog"});
  size_t from = prog.wait_for("ticket 5");
  std::string update = create_update(src, case_dir("cxx_static") + "/fix.patch", tmp / "fix.lsu");
  Json applied = apply_ok(prog, update);
  EXPECT_TRUE(names_function(applied["functions"], "_Z11next_ticketv")) << applied.dump();
  prog.wait_for_count("ticket", 5, prog.line_count(), 10s);
  EXPECT_TRUE(counts_on(tickets(prog, from), 1, 1000)) << prog.tail();
  expect_alive_and_running(prog);

  const size_t undone_from = prog.line_count() - 1;
  undo_ok(prog);
  prog.wait_for_count("ticket", 5, prog.line_count(), 10s);
  EXPECT_TRUE(counts_on(tickets(prog, undone_from), 1000, 1)) << prog.tail();
  expect_alive_and_running(prog);
}

}  // namespace

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The perf map (process/perfmap.h): after apply, /tmp/perf-PID.map still begins with what
// the program (a JIT) wrote and then names every replaced function at the address the
// apply recorded for its new code, inside the code it reports (code_at, code_bytes);
// undo leaves the file as it was (perf reads it after the fact).
TEST_F(Cxx, PerfMapNamesTheNewCode) {
  std::string src = build_case("cxx_virtual", tmp / "src");
  Program prog({src + "/prog"});
  prog.wait_for("area 49");
  const std::string map = "/tmp/perf-" + std::to_string(prog.pid()) + ".map";
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove_map{map};
  const std::string jit_line = "7f0000001000 40 jitted_by_the_program\n";
  std::ofstream(map) << jit_line;
  std::string update = create_update(src, case_dir("cxx_virtual") + "/fix.patch", tmp / "fix.lsu");

  Json applied = apply_ok(prog, update);
  prog.wait_for("area 1049");
  const uint64_t code_at = std::stoull(applied["code_at"].get<std::string>(), nullptr, 16);
  const uint64_t code_end = code_at + applied["code_bytes"].get<uint64_t>();
  const std::string text = slurp(map);
  EXPECT_EQ(text.rfind(jit_line, 0), 0u) << text;
  const Json trampolines = view_updates(prog)[0]["trampolines"];
  ASSERT_FALSE(trampolines.empty());
  for (const auto& t : trampolines) {
    const std::string label = t["function"].get<std::string>();
    // Demangled, as perf shows the program's own symbols; by binutils, not by livesplice.
    std::string name = must({"c++filt", label.substr(label.rfind(':') + 1)}).output();
    name.erase(name.find_last_not_of('\n') + 1);
    const uint64_t at = t["new_code"].get<uint64_t>();
    // "START SIZE NAME", the name being the rest of the line.
    std::optional<std::pair<uint64_t, uint64_t>> line;
    std::istringstream lines(text);
    for (std::string l; std::getline(lines, l);) {
      std::istringstream fields(l);
      std::string start, size, rest;
      fields >> start >> size >> std::ws;
      std::getline(fields, rest);
      if (rest == name) line = {std::stoull(start, nullptr, 16), std::stoull(size, nullptr, 16)};
    }
    ASSERT_TRUE(line) << name << " not in the perf map:\n" << text;
    EXPECT_EQ(line->first, at) << text;
    EXPECT_TRUE(line->second > 0 && at >= code_at && at + line->second <= code_end) << text;
  }
  undo_ok(prog);
  prog.wait_for("area 49", prog.line_count());
  EXPECT_EQ(slurp(map), text);
}

}  // namespace

namespace {

// create's summary and apply's and view's lists name a C++ function by its symbol and,
// beside it, as people read it.
TEST_F(Cxx, MessagesShowDemangledNames) {
  std::string src = build_case("cxx_virtual", tmp / "src");
  Program prog({src + "/prog"});
  prog.wait_for("area 49");
  const std::string readable = "shape.o:_ZNK6Square4areaEv (Square::area() const)";
  const std::string update = tmp / "fix.lsu";
  RunResult created = ls({"create", "--source", src, "--patch", case_dir("cxx_virtual") + "/fix.patch", "-o", update}, 180s);
  ASSERT_EQ(created.status, 0) << created.output();
  EXPECT_NE(created.output().find("changed " + readable), std::string::npos) << created.output();
  const std::string pid = std::to_string(prog.pid());
  RunResult applied = ls({"apply", "--pid", pid, update}, 120s);
  ASSERT_EQ(applied.status, 0) << applied.output();
  EXPECT_NE(applied.output().find("  " + readable), std::string::npos) << applied.output();
  RunResult viewed = ls({"view", "--pid", pid});
  EXPECT_NE(viewed.output().find("replaced " + readable), std::string::npos) << viewed.output();
  undo_ok(prog);
}

}  // namespace
