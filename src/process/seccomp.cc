#include "process/seccomp.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "arch/registers.h"

#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace ls::proc {

namespace {

constexpr uint32_t kActionFull = 0xffff0000U;   // SECCOMP_RET_ACTION_FULL
constexpr uint32_t kKillProcess = 0x80000000U;
constexpr uint32_t kKillThread = 0x00000000U;
constexpr uint32_t kTrap = 0x00030000U;
constexpr uint32_t kErrno = 0x00050000U;
constexpr uint32_t kUserNotif = 0x7fc00000U;
constexpr uint32_t kTrace = 0x7ff00000U;
constexpr uint32_t kLog = 0x7ffc0000U;
constexpr uint32_t kAllow = 0x7fff0000U;

// The kernel's order of precedence: the smaller, as a signed number, wins.
int32_t precedence(uint32_t ret) { return static_cast<int32_t>(ret & kActionFull); }

SeccompVerdict verdict_of(uint32_t ret) { return SeccompVerdict{ret & kActionFull, static_cast<uint16_t>(ret & 0xffff)}; }

// Lays out struct seccomp_data as the filter reads it (little endian, 64 bytes).
std::array<uint8_t, 64> layout(const SeccompData& d) {
  std::array<uint8_t, 64> b{};
  std::memcpy(b.data(), &d.nr, 4);
  std::memcpy(b.data() + 4, &d.arch, 4);
  std::memcpy(b.data() + 8, &d.instruction_pointer, 8);
  std::memcpy(b.data() + 16, d.args.data(), 48);
  return b;
}

std::string flags(uint64_t v, std::initializer_list<std::pair<uint64_t, const char*>> names, const char* none) {
  std::string s;
  for (auto [bit, name] : names)
    if (bit && (v & bit) == bit) {
      s += (s.empty() ? "" : "|") + std::string(name);
      v &= ~bit;
    }
  if (v) s += (s.empty() ? "" : "|") + fmt::format("{:#x}", v);
  return s.empty() ? none : s;
}

std::string prot_names(uint64_t prot) {
  return flags(prot, {{PROT_READ, "PROT_READ"}, {PROT_WRITE, "PROT_WRITE"}, {PROT_EXEC, "PROT_EXEC"}}, "PROT_NONE");
}

std::string map_names(uint64_t f) {
  return flags(f,
               {{MAP_SHARED, "MAP_SHARED"}, {MAP_PRIVATE, "MAP_PRIVATE"}, {MAP_ANONYMOUS, "MAP_ANONYMOUS"},
                {MAP_FIXED_NOREPLACE, "MAP_FIXED_NOREPLACE"}},
               "0");
}

}  // namespace

std::string PlannedCall::describe() const {
  const auto& a = args;
  switch (nr) {
    case SYS_memfd_create: return fmt::format("memfd_create(name, {})", a[1] & 1 ? "MFD_CLOEXEC" : fmt::format("{:#x}", a[1]));
    case SYS_mmap:
      return fmt::format("mmap({:#x}, {}, {}, {}, {}, {})", a[0], a[1], prot_names(a[2]), map_names(a[3]),
                         static_cast<int>(a[4]), a[5]);
    case SYS_mprotect: return fmt::format("mprotect({:#x}, {}, {})", a[0], a[1], prot_names(a[2]));
    case SYS_munmap: return fmt::format("munmap({:#x}, {})", a[0], a[1]);
    case SYS_close: return fmt::format("close({})", a[0]);
    case SYS_prctl: return fmt::format("prctl({:#x}, {}, {:#x}, {})", a[0], a[1], a[2], a[3]);
    default: return fmt::format("system call {}", nr);
  }
}

bool SeccompVerdict::runs() const { return action == kAllow || action == kLog; }

std::string SeccompVerdict::describe() const {
  switch (action) {
    case kAllow: return "is allowed by the target's seccomp filter";
    case kLog: return "is allowed (and logged) by the target's seccomp filter";
    case kKillProcess: return "would be killed by the target's seccomp filter (SECCOMP_RET_KILL_PROCESS)";
    case kKillThread: return "would be killed by the target's seccomp filter (SECCOMP_RET_KILL_THREAD)";
    case kTrap: return "would raise SIGSYS by the target's seccomp filter (SECCOMP_RET_TRAP)";
    case kErrno:
      return fmt::format("would fail with {} by the target's seccomp filter (SECCOMP_RET_ERRNO)",
                         std::strerror(data ? std::min<int>(data, 4095) : 0));
    case kUserNotif: return "would be handed to the target's seccomp supervisor (SECCOMP_RET_USER_NOTIF)";
    case kTrace: return "would fail with ENOSYS by the target's seccomp filter (SECCOMP_RET_TRACE, no such tracer)";
    default: return fmt::format("would be killed by the target's seccomp filter (unknown action {:#x})", action);
  }
}

SeccompVerdict run_seccomp_program(std::span<const sock_filter> program, const SeccompData& data) {
  const SeccompVerdict kill{kKillProcess, 0};
  const auto bytes = layout(data);
  uint32_t a = 0, x = 0;
  std::array<uint32_t, BPF_MEMWORDS> mem{};
  for (size_t pc = 0; pc < program.size(); ++pc) {
    const sock_filter& f = program[pc];
    const uint32_t k = f.k;
    auto jump = [&](bool taken) {
      pc += taken ? f.jt : f.jf;
      return pc + 1 < program.size();
    };
    uint32_t operand = BPF_SRC(f.code) == BPF_X ? x : k;
    switch (f.code) {
      case BPF_LD | BPF_W | BPF_ABS:
        if (k % 4 != 0 || k + 4 > bytes.size()) return kill;
        std::memcpy(&a, bytes.data() + k, 4);
        break;
      case BPF_LD | BPF_W | BPF_LEN: a = bytes.size(); break;
      case BPF_LDX | BPF_W | BPF_LEN: x = bytes.size(); break;
      case BPF_LD | BPF_IMM: a = k; break;
      case BPF_LDX | BPF_IMM: x = k; break;
      case BPF_LD | BPF_MEM:
        if (k >= mem.size()) return kill;
        a = mem[k];
        break;
      case BPF_LDX | BPF_MEM:
        if (k >= mem.size()) return kill;
        x = mem[k];
        break;
      case BPF_ST:
        if (k >= mem.size()) return kill;
        mem[k] = a;
        break;
      case BPF_STX:
        if (k >= mem.size()) return kill;
        mem[k] = x;
        break;
      case BPF_MISC | BPF_TAX: x = a; break;
      case BPF_MISC | BPF_TXA: a = x; break;
      case BPF_ALU | BPF_ADD | BPF_K: case BPF_ALU | BPF_ADD | BPF_X: a += operand; break;
      case BPF_ALU | BPF_SUB | BPF_K: case BPF_ALU | BPF_SUB | BPF_X: a -= operand; break;
      case BPF_ALU | BPF_MUL | BPF_K: case BPF_ALU | BPF_MUL | BPF_X: a *= operand; break;
      case BPF_ALU | BPF_DIV | BPF_K: case BPF_ALU | BPF_DIV | BPF_X:
        if (operand == 0) return verdict_of(0);   // classic BPF: the program returns 0
        a /= operand;
        break;
      case BPF_ALU | BPF_AND | BPF_K: case BPF_ALU | BPF_AND | BPF_X: a &= operand; break;
      case BPF_ALU | BPF_OR | BPF_K: case BPF_ALU | BPF_OR | BPF_X: a |= operand; break;
      case BPF_ALU | BPF_XOR | BPF_K: case BPF_ALU | BPF_XOR | BPF_X: a ^= operand; break;
      case BPF_ALU | BPF_LSH | BPF_K: case BPF_ALU | BPF_LSH | BPF_X: a = operand >= 32 ? 0 : a << operand; break;
      case BPF_ALU | BPF_RSH | BPF_K: case BPF_ALU | BPF_RSH | BPF_X: a = operand >= 32 ? 0 : a >> operand; break;
      case BPF_ALU | BPF_NEG: a = 0 - a; break;
      case BPF_JMP | BPF_JA:
        pc += k;
        if (pc + 1 >= program.size()) return kill;
        break;
      case BPF_JMP | BPF_JEQ | BPF_K: case BPF_JMP | BPF_JEQ | BPF_X:
        if (!jump(a == operand)) return kill;
        break;
      case BPF_JMP | BPF_JGT | BPF_K: case BPF_JMP | BPF_JGT | BPF_X:
        if (!jump(a > operand)) return kill;
        break;
      case BPF_JMP | BPF_JGE | BPF_K: case BPF_JMP | BPF_JGE | BPF_X:
        if (!jump(a >= operand)) return kill;
        break;
      case BPF_JMP | BPF_JSET | BPF_K: case BPF_JMP | BPF_JSET | BPF_X:
        if (!jump((a & operand) != 0)) return kill;
        break;
      case BPF_RET | BPF_K: return verdict_of(k);
      case BPF_RET | BPF_A: return verdict_of(a);
      default: return kill;   // seccomp's checker refuses everything else
    }
  }
  return kill;   // ran off the end
}

int SeccompFilters::mode(pid_t pid, pid_t tid) {
  std::ifstream in(fmt::format("/proc/{}/task/{}/status", pid, tid));
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("Seccomp:")) return std::atoi(line.c_str() + 8);
  return 0;
}

Result<SeccompFilters> SeccompFilters::read(pid_t tid, int mode_before) {
  SeccompFilters f;
  auto unreadable = [&](int err) {
    return Status::error(fmt::format("thread {} has a seccomp filter livesplice cannot read ({}), so what it would "
                                     "do with the system calls livesplice must make in it is unknown",
                                     tid, std::strerror(err)),
                         Exit::Unsafe);
  };
  const auto get = static_cast<__ptrace_request>(PTRACE_SECCOMP_GET_FILTER);
  for (unsigned long index = 0;; ++index) {
    long count = ptrace(get, tid, index, nullptr);
    if (count < 0 && errno == ENOENT) break;
    if (count < 0 && index == 0 && errno == EINVAL && mode_before != SECCOMP_MODE_FILTER) {
      f.strict_ = mode_before == SECCOMP_MODE_STRICT;   // not in filter mode
      return f;
    }
    if (count <= 0) return unreadable(errno);
    std::vector<sock_filter> program(count);
    if (ptrace(get, tid, index, program.data()) != count) return unreadable(errno);
    f.programs_.push_back(std::move(program));
  }
  // Index 0 is the oldest filter; the kernel runs the newest first, and among verdicts
  // of equal precedence keeps the first it met.
  std::reverse(f.programs_.begin(), f.programs_.end());
  return f;
}

SeccompVerdict SeccompFilters::evaluate(const PlannedCall& call, TargetAddr gadget) const {
  if (strict_) {
    bool allowed = call.nr == SYS_read || call.nr == SYS_write || call.nr == SYS_exit || call.nr == SYS_rt_sigreturn;
    return SeccompVerdict{allowed ? kAllow : kKillThread, 0};
  }
  SeccompData data;
  data.nr = static_cast<int32_t>(call.nr);
  data.arch = arch::kAuditArch;
  data.instruction_pointer = gadget.value() + arch::kSyscallInstructionSize;   // after the call instruction
  data.args = call.args;
  uint32_t best = kAllow;
  for (const auto& program : programs_) {
    SeccompVerdict v = run_seccomp_program(program, data);
    uint32_t ret = v.action | v.data;
    if (precedence(ret) < precedence(best)) best = ret;
  }
  return verdict_of(best);
}

std::string SeccompFilters::first_refused(std::span<const PlannedCall> calls, TargetAddr gadget) const {
  if (!any()) return {};
  for (const auto& c : calls)
    if (SeccompVerdict v = evaluate(c, gadget); !v.runs()) return c.describe() + " " + v.describe();
  return {};
}

}  // namespace ls::proc

