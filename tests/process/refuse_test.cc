// Updates livesplice must refuse, leaving the process exactly as it was: a function
// that never leaves a thread's stack, an update made from a source tree that is not the
// one the running program was built from (by build-id, then by run-pre matching), a
// corrupted update file, bad options, a user who may not patch. Each exits with its
// code and a message that says why, and the process goes on with its old code,
// untouched: not stopped, not traced, no update in its ledger, none of the update's
// code mapped.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <regex>

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

  // cases/NAME built in tmp/src and started, printing "sentinel 1001"; its fix made
  // into `update` by livesplice create.
  std::unique_ptr<Program> start_case(const std::string& name, const std::string& update) {
    std::string src = build_case(name, tmp / "src");
    auto prog = std::make_unique<Program>(std::vector<std::string>{src + "/prog"});
    prog->wait_for("sentinel 1001");
    create_update(src, case_dir(name) + "/fix.patch", update);
    return prog;
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

// The GNU build-id of an ELF file, as readelf -n shows it.
std::string build_id(const std::string& binary) {
  RunResult r = must({"readelf", "-n", binary});
  std::smatch m;
  if (!std::regex_search(r.out, m, std::regex(R"(Build ID: ([0-9a-f]+))"))) throw Failure("no build-id in\n" + r.out);
  return m[1];
}

// 12. The update was made from tree B, built (so the update knows B's binary by its
// build-id); the running program is A's. Refused before matching, naming both ids.
TEST_F(Refuse, BuildIdMismatch) {
  std::string a = build_case("mismatch", tmp / "a");
  std::string b = build_case("mismatch", tmp / "b");
  patch_tree(b, case_dir("mismatch") + "/variant.patch");
  must({"make"}, b);
  std::string a_id = build_id(a + "/prog"), b_id = build_id(b + "/prog");
  ASSERT_NE(a_id, b_id);
  Program prog({a + "/prog"});
  prog.wait_for("sentinel 1001");
  create_update(b, case_dir("mismatch") + "/fix.patch", tmp / "fix.lsu");

  RunResult r = apply_expect(prog, tmp / "fix.lsu", 2);
  EXPECT_NE(r.err.find(a + "/prog: build-id " + a_id), std::string::npos) << "the running file's id\n" << r.describe();
  EXPECT_NE(r.err.find("(prog " + b_id + ")"), std::string::npos) << "the update's id\n" << r.describe();
  EXPECT_EQ(r.err.find("expected"), std::string::npos) << "refused before matching\n" << r.describe();
  expect_untouched(prog, "sentinel 1001", "sentinel 2002");
}

// 13. One bit of the new code flipped after create wrote the update: applied, sentinel()
// would return 2003. The digest refuses the file before anything reads it (exit 1).
TEST_F(Refuse, CorruptedUpdate) {
  auto started = start_case("single", tmp / "fix.lsu");
  Program& prog = *started;
  std::string bytes = read_file(tmp / "fix.lsu");
  const std::string mov_2002("\xb8\xd2\x07\x00\x00", 5);   // mov $2002, %eax
  auto at = bytes.find(mov_2002);
  ASSERT_NE(at, std::string::npos) << "the new code's constant";
  bytes[at + 1] ^= 0x01;
  lstest::write_file(tmp / "flipped.lsu", bytes);

  RunResult r = apply_expect(prog, tmp / "flipped.lsu", 1);
  EXPECT_NE(r.err.find("flipped.lsu: not a usable livesplice update: its contents do not match its digest"),
            std::string::npos) << r.describe();
  expect_untouched(prog, "sentinel 1001", "sentinel 2003");
}

// 14. Numbers a person may get wrong are refused by the command line, before anything.
TEST_F(Refuse, NegativeNumbers) {
  auto started = start_case("single", tmp / "fix.lsu");
  Program& prog = *started;
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--retries", "-1"},
                                               {"--retry-delay", "-5"}}) {
    RunResult r = apply_expect(prog, tmp / "fix.lsu", 1, bad);
    EXPECT_NE(r.err.find(bad[0]), std::string::npos) << "names the option\n" << r.describe();
    EXPECT_EQ(r.err.find("gave up"), std::string::npos) << r.describe();
  }
  RunResult u = ls({"undo", "--pid", std::to_string(prog.pid()), "--retries", "-3"});
  EXPECT_EQ(u.status, 1) << u.describe();
  EXPECT_NE(u.err.find("--retries"), std::string::npos) << u.describe();
  RunResult p = ls({"view", "--pid", "-4"});
  EXPECT_EQ(p.status, 1) << p.describe();
  expect_untouched(prog, "sentinel 1001", "sentinel 2002");
}

// 15. A user who may not trace the process (nobody, against root's): told it is a
// permission problem and what patching needs, exit 1.
TEST_F(Refuse, PermissionDenied) {
  lstest::require_tools({"setpriv"});
  ASSERT_EQ(geteuid(), 0u) << "this test runs livesplice as nobody against a process of root's";
  // nobody must be able to read the update and run livesplice.
  std::filesystem::create_directory(tmp / "public");
  auto started = start_case("single", tmp / "public/fix.lsu");
  Program& prog = *started;
  for (const std::string& p : {tmp.path(), tmp / "public", tmp / "public/fix.lsu"})
    ::chmod(p.c_str(), 0755);
  RunResult r = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", livesplice(), "apply", "--pid",
                     std::to_string(prog.pid()), tmp / "public/fix.lsu"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("permission denied reading /proc/" + std::to_string(prog.pid())), std::string::npos)
      << r.describe();
  EXPECT_NE(r.err.find("patching a process needs root (CAP_SYS_PTRACE"), std::string::npos) << r.describe();
  EXPECT_EQ(r.err.find("does it exist"), std::string::npos) << r.describe();
  expect_untouched(prog, "sentinel 1001", "sentinel 2002");
}

// The state letter of /proc/PID/stat: the main thread's.
char leader_state(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
}

// 16. The main thread called pthread_exit: the leader is a zombie (its /proc/PID/maps is
// empty, /proc/PID/mem unreadable) while the worker runs on. The process is alive, not
// "exited": it is read through the worker (view works, the update's build-id and the
// process's files are checked), and refused because the kernel does not offer
// /proc/PID/map_files, through which new code is written, for such a process.
TEST_F(Refuse, ZombieLeader) {
  auto started = start_case("zombie_leader", tmp / "fix.lsu");
  Program& prog = *started;
  prog.wait_for("leader exits");
  ASSERT_EQ(leader_state(prog.pid()), 'Z') << "the leader has exited, the process lives on";

  EXPECT_TRUE(view_updates(prog).empty());
  RunResult r = apply_expect(prog, tmp / "fix.lsu", 2);
  EXPECT_NE(r.err.find("its main thread has exited (pthread_exit) while other threads run on"), std::string::npos)
      << r.describe();
  EXPECT_EQ(r.err.find("may have exited"), std::string::npos) << r.describe();
  EXPECT_TRUE(prog.same_process());
  size_t mark = prog.line_count();
  prog.wait_for_count("sentinel 1001", 5, mark);
  EXPECT_FALSE(prog.find("sentinel 2002")) << prog.tail();
}

}  // namespace
