// A compromised target attacks the ledger livesplice keeps in it (cases/forger): it
// changes its copy (a site; original bytes longer than the jump; terminal escapes in a
// name), or maps a lookalike, small or of 1 GiB. livesplice runs as root and must trust
// none of it: view, undo and apply each end in a refusal (exit 2) that names the
// tampering, and nothing is written — the bytes of the target's code are as they were,
// and it goes on running the code it ran.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Forged : public PtraceTest {
 protected:
  void start() {
    src = build_case("forger", tmp / "src");
    Program::Options o;
    o.stdin_pipe = true;
    prog = std::make_unique<Program>(std::vector<std::string>{src + "/prog"}, o);
    std::string at = prog->line(prog->wait_for("sentinel() at "));
    sentinel_at = std::stoull(at.substr(at.find("0x")), nullptr, 16);
    prog->wait_for("sentinel 1001");
    update = create_update(src, case_dir("forger") + "/fix.patch", tmp / "fix.lsu");
  }

  // The target's code where the jump goes (sentinel's first bytes), from outside.
  std::string code_bytes() {
    int fd = open(("/proc/" + std::to_string(prog->pid()) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    std::string b(32, '\0');
    ssize_t n = fd >= 0 ? pread(fd, b.data(), b.size(), static_cast<off_t>(sentinel_at)) : -1;
    if (fd >= 0) close(fd);
    if (n != static_cast<ssize_t>(b.size())) throw Failure("cannot read the target's code");
    return b;
  }

  void forge(const std::string& what) {
    size_t mark = prog->line_count();
    prog->write_stdin(what + "\n");
    std::string said = prog->line(prog->wait_for(" " + what, mark));
    if (said.rfind("done ", 0) != 0) throw Failure("the target could not forge: " + said);
  }

  // Every command is refused, naming `why`; nothing is written; the process runs `text`.
  void expect_refused(const std::string& why, const std::string& text) {
    std::string before = code_bytes();
    std::string pid = std::to_string(prog->pid());
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"view", "--pid", pid}, {"undo", "--pid", pid, "--all"}, {"apply", "--pid", pid, update}}) {
      RunResult r = ls(args, 60s);
      EXPECT_EQ(r.status, 2) << r.describe();
      EXPECT_NE(r.err.find(why), std::string::npos) << "the refusal must name the tampering\n" << r.describe();
      EXPECT_EQ(r.output().find('\x1b'), std::string::npos) << "an escape sequence reached the terminal\n"
                                                            << r.describe();
    }
    EXPECT_EQ(code_bytes(), before) << "livesplice wrote into the target's code";
    expect_alive_and_running(*prog);
    prog->wait_for_count(text, 3, prog->line_count());
  }

  TempDir tmp;
  std::string src, update;
  std::unique_ptr<Program> prog;
  uint64_t sentinel_at = 0;
};

// (a) The copy made writable, an entry's site moved, made read-only again.
TEST_F(Forged, ChangedSite) {
  start();
  apply_ok(*prog, update);
  forge("site");
  expect_refused("tampering", "sentinel 2002");
}

// (d) An entry's original bytes made longer than its jump (once a heap overflow in the
// root guardian).
TEST_F(Forged, OriginalLongerThanJump) {
  start();
  apply_ok(*prog, update);
  forge("original");
  expect_refused("tampering", "sentinel 2002");
}

// (e) Terminal escapes in a function name: refused, and never printed raw.
TEST_F(Forged, TerminalEscapes) {
  start();
  apply_ok(*prog, update);
  forge("escape");
  expect_refused("tampering", "sentinel 2002");
}

// (b) A lookalike in a process livesplice never touched, and beside a real copy.
TEST_F(Forged, Lookalike) {
  start();
  forge("lookalike");
  expect_refused("forged ledger (tampering)", "sentinel 1001");
}

TEST_F(Forged, LookalikeBesideTheCopy) {
  start();
  apply_ok(*prog, update);
  forge("lookalike");
  expect_refused("imitates its ledger copy", "sentinel 2002");
}

// (c) A 1 GiB lookalike: refused without reading it — quickly (against a view of the
// same process before, in this run) and in little memory (under a 512 MiB limit).
TEST_F(Forged, HugeLookalike) {
  start();
  auto timed_view = [&] {
    auto t0 = std::chrono::steady_clock::now();
    RunResult r = run({"sh", "-c", "ulimit -v 524288; exec \"$0\" view --pid " + std::to_string(prog->pid()),
                       livesplice()});
    return std::pair(r, std::chrono::steady_clock::now() - t0);
  };
  auto [clean, baseline] = timed_view();
  ASSERT_EQ(clean.status, 0) << clean.describe();
  forge("huge");
  auto [r, took] = timed_view();
  EXPECT_EQ(r.status, 2) << r.describe();
  EXPECT_NE(r.err.find("forged ledger (tampering)"), std::string::npos) << r.describe();
  EXPECT_LT(took, baseline * 20 + 200ms) << "a refusal must not read the lookalike";
  expect_refused("forged ledger (tampering)", "sentinel 1001");
}

// An update whose patch name holds terminal escapes (update files travel between
// machines): applied, and view prints the name escaped.
TEST_F(Forged, EscapesFromTheUpdateArePrintedEscaped) {
  start();
  std::string patch = std::string(tmp / "fix\x1b]0;owned\x07.patch");
  std::filesystem::copy_file(case_dir("forger") + "/fix.patch", patch);
  std::string named = create_update(src, patch, tmp / "named.lsu");
  apply_ok(*prog, named);
  RunResult r = ls({"view", "--pid", std::to_string(prog->pid())});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.output().find('\x1b'), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("fix\\x1b]0;owned\\x07.patch"), std::string::npos) << r.describe();
  undo_ok(*prog);
}

}  // namespace
