// The registers of a stopped thread on x86-64, as ptrace reads and writes them, and the
// Linux system call convention over them. Included through arch/registers.h only.
//
// What is hard: the kernel's view of a thread in a system call lives in two registers.
// `orig_rax` is the call it is in (-1: none), `rax` its result, or a restart code while
// the call is interrupted; re-issuing a call is `rax = orig_rax` and moving the pc back
// over the 2-byte `syscall` instruction, which is exactly what the kernel does itself
// when it restarts one.
#pragma once

#include <linux/audit.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace ls::arch {

using Registers = user_regs_struct;

inline uint64_t pc(const Registers& r) { return r.rip; }
inline void set_pc(Registers& r, uint64_t v) { r.rip = v; }
inline uint64_t sp(const Registers& r) { return r.rsp; }
inline void set_sp(Registers& r, uint64_t v) { r.rsp = v; }

// The call a thread stopped in or right after (-1: none), and what it returned so far.
inline int64_t syscall_number(const Registers& r) { return static_cast<int64_t>(r.orig_rax); }
inline void set_syscall_number(Registers& r, int64_t nr) { r.orig_rax = static_cast<uint64_t>(nr); }
inline int64_t syscall_result(const Registers& r) { return static_cast<int64_t>(r.rax); }

// The system call instruction (`syscall`, 0f 05) and its length: the pc after a call.
constexpr uint64_t kSyscallInstructionSize = 2;
constexpr bool is_syscall_instruction(uint64_t word) { return (word & 0xffff) == 0x050f; }

// How far past an armed site (its one-byte trap, arch::Target::trap) the pc is when the
// thread stops on the trap: int3 reports the address after itself.
constexpr uint64_t kTrapPcAdvance = 1;

// Below the stack pointer a function may use without moving it (the ABI's red zone):
// what livesplice writes under a borrowed thread's stack must stay below it.
constexpr uint64_t kRedZone = 128;

// The seccomp_data.arch a filter sees for this machine's native calls.
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;

// A thread stopped at `gadget` (a syscall instruction) set up to make call `nr(args)`.
inline void load_syscall(Registers& r, uint64_t gadget, int64_t nr, const std::array<uint64_t, 6>& args) {
  r.rip = gadget;
  r.rax = static_cast<uint64_t>(nr);
  r.orig_rax = static_cast<uint64_t>(-1);
  r.rdi = args[0];
  r.rsi = args[1];
  r.rdx = args[2];
  r.r10 = args[3];
  r.r8 = args[4];
  r.r9 = args[5];
}

// A thread stopped right after a call ended: on resume it makes call `nr` (the kernel's
// own restart: the same call, or SYS_restart_syscall for a restart block). The call it
// was in (syscall_number) is left as it is; set it to -1 where the kernel must not
// restart anything itself.
inline void reissue_syscall(Registers& r, int64_t nr) {
  r.rax = static_cast<uint64_t>(nr);
  r.rip -= kSyscallInstructionSize;
}

// A call of `fn` (up to two integer arguments) as right after a call instruction: the stack pointer at
// `frame`, where the caller wrote the return address; no system call to restart on the
// way in; the ABI's direction flag clear. call_frame gives `frame` for a stack pointer,
// `gap` bytes of room below the red zone, the frame 16-byte aligned above the return
// address as the ABI wants at a function's entry.
inline uint64_t call_frame(uint64_t sp, uint64_t gap) { return ((sp - kRedZone - gap) & ~uint64_t{15}) - 8; }
inline void load_call(Registers& r, uint64_t fn, uint64_t frame, std::array<uint64_t, 2> args = {}) {
  r.rip = fn;
  r.rsp = frame;
  r.rdi = args[0];
  r.rsi = args[1];
  r.rax = 0;
  r.orig_rax = static_cast<uint64_t>(-1);
  r.eflags &= ~uint64_t{0x400};
}
// Whether a call loaded with `frame` has returned to `return_address`, and its int value.
inline bool call_returned(const Registers& r, uint64_t frame, uint64_t return_address) {
  return r.rip == return_address && r.rsp == frame + 8;
}
inline int call_result(const Registers& r) { return static_cast<int>(static_cast<uint32_t>(r.rax)); }
inline uint64_t call_result_word(const Registers& r) { return r.rax; }

// The registers in DWARF numbering (0-16: rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp,
// r8-r15, and the return address column rip), for an unwinder's first frame.
constexpr size_t kDwarfRegisters = 17;
inline std::array<uint64_t, kDwarfRegisters> dwarf_registers(const Registers& r) {
  return {r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8,
          r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip};
}

// One execution breakpoint of the thread's own debug registers (DR0, enabled locally in
// DR7 for execution, length 1): no byte of the process is written, and no other thread
// trips on it. The kernel does not clear it when the tracer dies.
inline bool set_exec_breakpoint(pid_t tid, uint64_t at) {
  auto dr = [](int n) { return reinterpret_cast<void*>(offsetof(struct user, u_debugreg) + sizeof(uint64_t) * n); };
  return ptrace(PTRACE_POKEUSER, tid, dr(0), reinterpret_cast<void*>(at)) == 0 &&
         ptrace(PTRACE_POKEUSER, tid, dr(7), reinterpret_cast<void*>(uint64_t{1})) == 0;
}
inline bool clear_exec_breakpoint(pid_t tid) {
  return ptrace(PTRACE_POKEUSER, tid, reinterpret_cast<void*>(offsetof(struct user, u_debugreg) + sizeof(uint64_t) * 7),
                nullptr) == 0;
}

inline bool read_registers(pid_t tid, Registers& r) { return ptrace(PTRACE_GETREGS, tid, nullptr, &r) == 0; }
inline bool write_registers(pid_t tid, const Registers& r) { return ptrace(PTRACE_SETREGS, tid, nullptr, &r) == 0; }

}  // namespace ls::arch
