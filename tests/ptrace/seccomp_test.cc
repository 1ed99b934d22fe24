// The seccomp evaluator (src/process/seccomp.h) against the kernel itself: filters are
// compiled by libseccomp (as systemd's are), run by the evaluator on a call, and loaded
// into a forked child that makes the very same call; the evaluator's verdict must be
// what the kernel did — the call ran, failed with that errno, or the child died of
// SIGSYS. Then what the kernel does not show directly: several filters' precedence,
// read back from a stopped child with PTRACE_SECCOMP_GET_FILTER.
#include <errno.h>
#include <gtest/gtest.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "process/seccomp.h"

namespace {

using ls::proc::PlannedCall;
using ls::proc::SeccompVerdict;

constexpr uint32_t kAllow = 0x7fff0000U, kErrno = 0x00050000U, kKillProcess = 0x80000000U;

// A libseccomp filter's classic BPF, as the kernel would get it.
std::vector<sock_filter> compile(scmp_filter_ctx ctx) {
  FILE* f = tmpfile();
  EXPECT_NE(f, nullptr);
  EXPECT_EQ(seccomp_export_bpf(ctx, fileno(f)), 0);
  std::vector<sock_filter> program;
  rewind(f);
  sock_filter insn;
  while (fread(&insn, sizeof insn, 1, f) == 1) program.push_back(insn);
  fclose(f);
  return program;
}

// What the kernel does with `call` under the filters `build` makes: the call's verdict
// as a SeccompVerdict (ALLOW, ERRNO with its errno, or KILL_PROCESS).
SeccompVerdict kernel_verdict(const std::function<void()>& build, const PlannedCall& call) {
  pid_t child = fork();
  if (child == 0) {
    build();
    long rc = syscall(call.nr, call.args[0], call.args[1], call.args[2], call.args[3], call.args[4], call.args[5]);
    _exit(rc < 0 ? 100 + errno : 0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) return {kKillProcess, 0};
  EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
  int code = WEXITSTATUS(status);
  // A call the filter let run may still fail on its own (bad arguments): that is ALLOW.
  return code == 0 || code - 100 != EPERM ? SeccompVerdict{kAllow, 0} : SeccompVerdict{kErrno, EPERM};
}

SeccompVerdict evaluate(const std::vector<sock_filter>& program, const PlannedCall& call) {
  ls::proc::SeccompData d;
  d.nr = static_cast<int32_t>(call.nr);
  d.arch = SCMP_ARCH_X86_64;
  d.instruction_pointer = 0x401000;
  d.args = call.args;
  return ls::proc::run_seccomp_program(program, d);
}

void load(scmp_filter_ctx ctx) {
  if (seccomp_load(ctx) != 0) _exit(99);
}

// systemd's MemoryDenyWriteExecute= rules, and a rule on a 64-bit argument (an address
// above 4 GiB: libseccomp compares it as two 32-bit halves).
scmp_filter_ctx mdwe_and_address() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  const scmp_datum_t wx = PROT_WRITE | PROT_EXEC;
  seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, wx, wx));
  seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
  seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(munmap), 1, SCMP_A0(SCMP_CMP_EQ, 0x7f0012345000ULL));
  seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(memfd_create), 0);
  return ctx;
}

TEST(SeccompEvaluator, AgreesWithTheKernel) {
  const uint64_t anon = MAP_PRIVATE | MAP_ANONYMOUS, none = static_cast<uint64_t>(-1);
  const std::vector<PlannedCall> calls{
      {SYS_mmap, {0, 4096, PROT_READ | PROT_EXEC, anon, none, 0}},
      {SYS_mmap, {0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, anon, none, 0}},
      {SYS_mmap, {0, 4096, PROT_READ | PROT_WRITE, anon, none, 0}},
      {SYS_mprotect, {0x10000, 4096, PROT_READ | PROT_WRITE}},
      {SYS_mprotect, {0x10000, 4096, PROT_READ | PROT_EXEC}},
      {SYS_munmap, {0x7f0012345000ULL, 4096}},
      {SYS_munmap, {0x000012345000ULL, 4096}},   // the same low half
      {SYS_munmap, {0x7f0112345000ULL, 4096}},   // the same high byte, another high half
      {SYS_memfd_create, {0, 0}},
      {SYS_getpid, {}},
  };
  scmp_filter_ctx ctx = mdwe_and_address();
  std::vector<sock_filter> program = compile(ctx);
  seccomp_release(ctx);
  ASSERT_FALSE(program.empty());
  for (const auto& call : calls) {
    SeccompVerdict ours = evaluate(program, call);
    SeccompVerdict kernel = kernel_verdict([] { load(mdwe_and_address()); }, call);
    EXPECT_EQ(ours.action, kernel.action) << call.describe() << ": " << ours.describe() << " / kernel: " << kernel.describe();
    if (ours.action == kErrno) {
      EXPECT_EQ(ours.data, kernel.data) << call.describe();
    }
  }
}

// Several filters: every one runs, the verdict of highest precedence wins, and among
// equals the most recently installed one's. Read back from a stopped child.
TEST(SeccompEvaluator, PrecedenceAcrossFiltersReadFromAThread) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  if (child == 0) {
    scmp_filter_ctx a = seccomp_init(SCMP_ACT_ALLOW);   // installed first
    seccomp_rule_add(a, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(getppid), 0);
    seccomp_rule_add(a, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(getuid), 0);
    seccomp_rule_add(a, SCMP_ACT_LOG, SCMP_SYS(getgid), 0);
    load(a);
    scmp_filter_ctx b = seccomp_init(SCMP_ACT_ALLOW);   // installed last
    seccomp_rule_add(b, SCMP_ACT_KILL_PROCESS, SCMP_SYS(getppid), 0);
    seccomp_rule_add(b, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(getuid), 0);
    load(b);
    if (write(ready[1], "r", 1) != 1) _exit(98);
    for (;;) pause();
  }
  char byte;
  ASSERT_EQ(read(ready[0], &byte, 1), 1) << "the child did not install its filters";
  close(ready[0]);
  close(ready[1]);
  ASSERT_EQ(ptrace(PTRACE_SEIZE, child, nullptr, nullptr), 0);
  ASSERT_EQ(ptrace(PTRACE_INTERRUPT, child, nullptr, nullptr), 0);
  int status = 0;
  waitpid(child, &status, __WALL);
  auto filters = ls::proc::SeccompFilters::read(child, ls::proc::SeccompFilters::mode(child, child));
  ptrace(PTRACE_DETACH, child, nullptr, nullptr);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(filters.ok()) << filters.status().message();
  const ls::TargetAddr gadget(0x401000);
  EXPECT_EQ(filters->evaluate({SYS_getppid, {}}, gadget).action, kKillProcess);
  SeccompVerdict uid = filters->evaluate({SYS_getuid, {}}, gadget);
  EXPECT_EQ(uid.action, kErrno);
  EXPECT_EQ(uid.data, EPERM) << "the newest filter's errno";
  EXPECT_TRUE(filters->evaluate({SYS_getgid, {}}, gadget).runs()) << "SECCOMP_RET_LOG runs the call";
  EXPECT_TRUE(filters->evaluate({SYS_getpid, {}}, gadget).runs());
  std::string refused = filters->first_refused(std::vector<PlannedCall>{{SYS_getpid, {}}, {SYS_getppid, {}}}, gadget);
  EXPECT_NE(refused.find("SECCOMP_RET_KILL_PROCESS"), std::string::npos) << refused;
}

// A program the evaluator cannot run is never taken as allowing.
TEST(SeccompEvaluator, BrokenProgramKills) {
  ls::proc::SeccompData d;
  d.nr = SYS_getpid;
  std::vector<sock_filter> empty;
  EXPECT_EQ(ls::proc::run_seccomp_program(empty, d).action, kKillProcess);
  std::vector<sock_filter> unaligned{BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 2), BPF_STMT(BPF_RET | BPF_K, kAllow)};
  EXPECT_EQ(ls::proc::run_seccomp_program(unaligned, d).action, kKillProcess);
  std::vector<sock_filter> jumps_out{BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 5), BPF_STMT(BPF_RET | BPF_K, kAllow)};
  EXPECT_EQ(ls::proc::run_seccomp_program(jumps_out, d).action, kKillProcess);
}

}  // namespace
