// The host machine's registers, for tracing processes. Unlike arch::Target (chosen at
// run time by an object's elf::Machine: create and match work on any machine's code),
// this is chosen at compile time: ptrace only ever stops threads of the machine
// livesplice itself runs on. Each port provides arch/MACHINE/registers.h with the same
// names: Registers, pc/sp and their setters, the system call convention
// (syscall_number, syscall_result, load_syscall, reissue_syscall,
// kSyscallInstructionSize, is_syscall_instruction), a function call (call_frame,
// load_call, call_returned, call_result), kTrapPcAdvance, kRedZone, kAuditArch,
// dwarf_registers, read_registers/write_registers, set_exec_breakpoint and
// clear_exec_breakpoint.
#pragma once

#if defined(__x86_64__)
#include "arch/x86_64/registers.h"
#else
#error "livesplice traces processes on x86-64 only: a port adds arch/<machine>/registers.h"
#endif
