// Hardened programs: targets confined by seccomp filters, built with libseccomp the way
// systemd builds SystemCallFilter= and MemoryDenyWriteExecute= (cases/seccomp). The
// system calls apply and undo make in the target run under its own filters, so each
// target must end either updated (through a way its filter allows) or refused with
// exit 2 naming the call and the filter's verdict — and alive, never killed, and with
// its old code running when refused.
//
// systemd itself cannot confine a test program here unless it is the running init (PID
// 1); the "systemd" case therefore loads systemd's own @system-service list, as
// `systemd-analyze syscall-filter` prints it, into the same kind of filter.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "steps.h"
#include "support.h"

using namespace lsproc;

namespace {

class Seccomp : public PtraceTest {
 protected:
  void SetUp() override {
    PtraceTest::SetUp();
    src = build_case("seccomp", tmp / "src");
    update = create_update(src, case_dir("seccomp") + "/fix.patch", tmp / "fix.lsu");
  }

  // The update goes in and out; the process lives throughout. Returns the name of the
  // code region the ledger records ("/memfd:…" or "anonymous:…").
  std::string applied_and_undone(Program& prog) {
    prog.wait_for("sentinel 1001");
    Json applied = apply_ok(prog, update);
    last_applied = applied;
    size_t mark = prog.line_count();
    prog.wait_for_count("sentinel 2002", 3, mark);
    expect_alive_and_running(prog);
    Json updates = view_updates(prog);
    if (updates.size() != 1) throw Failure("view must list the update: " + updates.dump(2));
    std::string region = updates[0]["regions"][0]["name"];
    uint64_t start = updates[0]["regions"][0]["start"];
    // Mapped where the ledger says, and never writable and executable at once.
    bool found = false;
    for (const auto& line : maps_with(prog.pid(), "")) {
      unsigned long lo = 0, hi = 0;
      char perms[8] = {};
      if (sscanf(line.c_str(), "%lx-%lx %7s", &lo, &hi, perms) != 3) continue;
      found |= lo == start;
      EXPECT_FALSE(perms[1] == 'w' && perms[2] == 'x') << "a writable and executable mapping: " << line;
    }
    EXPECT_TRUE(found) << "the update's code region " << region << " is not mapped at " << start;
    undo_ok(prog);
    mark = prog.line_count();
    prog.wait_for_count("sentinel 1001", 3, mark);
    expect_alive_and_running(prog);
    EXPECT_TRUE(view_updates(prog).empty());
    return region;
  }

  // Refused with exit 2 naming `call` and `verdict`; the process runs its old code on,
  // with nothing recorded and nothing of the update mapped.
  void refused(Program& prog, const std::string& call, const std::string& verdict) {
    prog.wait_for("sentinel 1001");
    std::string maps_before = read_file("/proc/" + std::to_string(prog.pid()) + "/maps");
    RunResult r = apply_expect(prog, update, 2);
    EXPECT_NE(r.err.find(call), std::string::npos) << "the message must name the call " << call << "\n" << r.describe();
    EXPECT_NE(r.err.find(verdict), std::string::npos) << "the message must give the verdict " << verdict << "\n"
                                                      << r.describe();
    expect_alive_and_running(prog);
    size_t mark = prog.line_count();
    prog.wait_for_count("sentinel 1001", 3, mark);
    EXPECT_FALSE(prog.find("sentinel 2002")) << prog.tail();
    EXPECT_TRUE(view_updates(prog).empty());
    EXPECT_EQ(read_file("/proc/" + std::to_string(prog.pid()) + "/maps"), maps_before) << "the address space changed";
  }

  // Every system call of a systemd group, nested groups expanded, from systemd's own
  // tables (`systemd-analyze syscall-filter`); the groups in `without` left out.
  std::set<std::string> systemd_group(const std::string& group, const std::set<std::string>& without = {}) {
    std::set<std::string> out;
    std::function<void(const std::string&)> expand = [&](const std::string& g) {
      RunResult r = must({"systemd-analyze", "syscall-filter", g});
      std::istringstream in(r.out);
      bool first = true;
      for (std::string word; in >> word;) {
        if (first) {   // the group's own name heads the list
          first = false;
          continue;
        }
        if (word[0] == '#') {
          std::string rest;
          std::getline(in, rest);
        } else if (word[0] == '@') {
          if (!without.contains(word)) expand(word);
        } else {
          out.insert(word);
        }
      }
    };
    expand(group);
    if (out.size() < 100) throw Failure("systemd-analyze gave only " + std::to_string(out.size()) + " calls for " + group);
    return out;
  }

  std::string list_file(const std::set<std::string>& calls) {
    std::string path = tmp / "allowed";
    std::ofstream f(path);
    for (const auto& c : calls) f << c << "\n";
    return path;
  }

  // How many calls livesplice's parked thread made in the last apply (parked.h).
  int parked_calls() const { return last_applied.at("parked").at("calls").get<int>(); }

  TempDir tmp;
  std::string src, update;
  Json last_applied;
};

// memfd_create kills the process: the regions are mapped the anonymous way instead.
TEST_F(Seccomp, KillOnMemfdCreate) {
  Program prog({src + "/prog", "kill-memfd"});
  EXPECT_EQ(applied_and_undone(prog).rfind("anonymous:", 0), 0u);
}

// memfd_create fails with EPERM: the same.
TEST_F(Seccomp, ErrnoOnMemfdCreate) {
  Program prog({src + "/prog", "errno-memfd"});
  EXPECT_EQ(applied_and_undone(prog).rfind("anonymous:", 0), 0u);
}

// MemoryDenyWriteExecute= (and the kernel's PR_SET_MDWE where it has it): no mapping
// livesplice asks for is writable and executable, and none is made executable later.
TEST_F(Seccomp, MemoryDenyWriteExecute) {
  Program prog({src + "/prog", "mdwe"});
  prog.wait_for("kernel mdwe: ");
  EXPECT_EQ(applied_and_undone(prog).rfind("/memfd:", 0), 0u);
}

// An allow list that kills anything else (systemd's @system-service without @ipc, so no
// memfd_create), with MemoryDenyWriteExecute= as a second filter.
TEST_F(Seccomp, AllowListWithoutMemfd) {
  auto calls = systemd_group("@system-service", {"@ipc"});
  ASSERT_FALSE(calls.contains("memfd_create"));
  Program prog({src + "/prog", "allow-list", list_file(calls)});
  prog.wait_for("allow-list: ");
  EXPECT_EQ(applied_and_undone(prog).rfind("anonymous:", 0), 0u);
}

// systemd's own SystemCallFilter=@system-service and MemoryDenyWriteExecute=yes, the
// hardening most Debian services ship with. It allows clone: the calls are made by a
// thread livesplice parks in the process, the program's own thread lent for the clone
// only.
TEST_F(Seccomp, SystemdSystemService) {
  Program prog({src + "/prog", "allow-list", list_file(systemd_group("@system-service"))});
  prog.wait_for("allow-list: ");
  EXPECT_EQ(applied_and_undone(prog).rfind("/memfd:", 0), 0u);
  EXPECT_GE(parked_calls(), 4) << last_applied.dump(2);
  EXPECT_EQ(last_applied["borrowed"]["calls"].get<int>(), 2) << "one clone per mapping\n" << last_applied.dump(2);
}

// clone kills the process: livesplice cannot park a thread of its own in it, and makes
// every call on a thread of the program, as it borrows it for the clone elsewhere.
TEST_F(Seccomp, KillOnCloneBorrowsForEveryCall) {
  Program prog({src + "/prog", "kill-clone"});
  prog.wait_for("filtered: kill-clone");
  EXPECT_EQ(applied_and_undone(prog).rfind("/memfd:", 0), 0u);
  EXPECT_EQ(parked_calls(), 0) << last_applied.dump(2);
  EXPECT_GE(last_applied["borrowed"]["calls"].get<int>(), 4) << last_applied.dump(2);
}

// No way to map code is left (openssh's sandbox: no memfd_create, no PROT_EXEC):
// refused, naming the calls and the verdict; the process is not killed.
TEST_F(Seccomp, NoExecutableMappingRefused) {
  Program prog({src + "/prog", "no-exec"});
  refused(prog, "memfd_create", "SECCOMP_RET_KILL_PROCESS");
  RunResult again = apply_expect(prog, update, 2);
  EXPECT_NE(again.err.find("mmap("), std::string::npos) << again.describe();
  EXPECT_NE(again.err.find("PROT_EXEC"), std::string::npos) << again.describe();
}

}  // namespace
