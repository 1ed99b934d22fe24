// The x86-64 kernel's run-time rewrites (see rewrites.h). Each entry says which kernel
// code writes it; the encodings are the instruction set's, the choices the kernel's.
#include "kernel/rewrites.h"

#include <array>
#include <string>

namespace ls::kernel {
namespace {

using match::RunForm;
using Bytes = std::vector<uint8_t>;

const Bytes kNop5{0x0f, 0x1f, 0x44, 0x00, 0x00};
const Bytes kRetInt3{0xc3, 0xcc, 0xcc, 0xcc, 0xcc};
const Bytes kLfence{0x0f, 0xae, 0xe8};

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// `call *%reg` (modrm 0xd0 | reg) or `jmp *%reg` (0xe0 | reg), REX.B for r8-r15.
Bytes indirect(uint8_t modrm, int reg) {
  if (reg >= 8) return {0x41, 0xff, static_cast<uint8_t>(modrm | (reg - 8))};
  return {0xff, static_cast<uint8_t>(modrm | reg)};
}

// A retpoline thunk call or jump, as alternative.c's patch_retpoline leaves it when the
// CPU needs no retpoline (the indirect branch, an int3 after a jump, the rest single-byte
// NOPs that optimize_nops merges into one long NOP) or needs the lfence variant (when it
// fits). A thunk the CPU does need stays a call to the thunk; an ITS thunk is a branch
// out of the function.
std::vector<RunForm> retpoline_forms(int reg) {
  const Bytes nop3{0x0f, 0x1f, 0x00}, nop2{0x66, 0x90}, nop1{0x90}, int3{0xcc};
  std::vector<RunForm> f;
  bool low = reg < 8;
  Bytes call = indirect(0xd0, reg), jmp = indirect(0xe0, reg);
  f.push_back({"call *%reg", {0xe8}, cat({call, low ? nop3 : nop2})});
  f.push_back({"jmp *%reg; int3", {0xe9}, cat({jmp, int3, low ? nop2 : nop1})});
  if (low) {
    f.push_back({"lfence; call *%reg", {0xe8}, cat({kLfence, call})});
    f.push_back({"lfence; jmp *%reg", {0xe9}, cat({kLfence, jmp})});
  }
  f.push_back({"call to an ITS thunk", {0xe8}, {0xe8}, RunForm::Branch::Outside});
  f.push_back({"jmp to an ITS thunk", {0xe9}, {0xe9}, RunForm::Branch::Outside});
  // Jcc.d32 to the thunk: the inverted Jcc.d8 over `jmp *%reg; int3` (+ a NOP).
  for (uint8_t cc = 0; cc < 16; ++cc) {
    Bytes skip{static_cast<uint8_t>(0x70 + (cc ^ 1)), 0x04};
    f.push_back({"jcc over jmp *%reg", {0x0f, static_cast<uint8_t>(0x80 + cc)},
                 cat({skip, jmp, int3, low ? nop1 : Bytes{}})});
  }
  return f;
}

}  // namespace

match::Rewrites x86_64_rewrites() {
  match::Rewrites rw;
  // ftrace: every traceable function's `call __fentry__` is NOPed at boot, and while it is
  // traced calls a trampoline (or ftrace_caller): a call out of the function.
  rw.by_symbol["__fentry__"] = {{"ftrace NOP", {0xe8}, kNop5}, {"call to an ftrace trampoline", {0xe8}, {0xe8}, RunForm::Branch::Outside}};
  // apply_returns: `jmp __x86_return_thunk` becomes `ret; int3...` when the CPU needs no
  // return thunk, or a jump to the thunk the mitigation chose (x86_return_thunk).
  rw.by_symbol["__x86_return_thunk"] = {{"ret; int3", {0xe9}, kRetInt3},
                                        {"jmp to the chosen return thunk", {0xe9}, {0xe9}, RunForm::Branch::Outside}};
  static const std::array<const char*, 16> kRegs{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                                 "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
  for (int reg = 0; reg < 16; ++reg)
    if (reg != 4)   // there is no thunk for %rsp
      rw.by_symbol[std::string("__x86_indirect_thunk_") + kRegs[reg]] = retpoline_forms(reg);
  // Static calls (arch/x86/kernel/static_call.c): a site calls or jumps to its target
  // directly, is the NOP for a NULL target, `xor %eax,%eax` (5 bytes) for
  // __static_call_return0, or `ret; int3...` for a NULL tail call.
  std::vector<RunForm> sct{{"direct static call", {0xe8}, {0xe8}, RunForm::Branch::Outside},
                           {"static call NOP", {0xe8}, kNop5},
                           {"static call returning 0", {0xe8}, {0x2e, 0x2e, 0x2e, 0x31, 0xc0}},
                           {"direct static tail call", {0xe9}, {0xe9}, RunForm::Branch::Outside},
                           {"static tail call to NULL", {0xe9}, kRetInt3}};
  for (uint8_t cc = 0; cc < 16; ++cc) {
    uint8_t op = static_cast<uint8_t>(0x80 + cc);
    sct.push_back({"direct conditional static tail call", {0x0f, op}, {0x0f, op}, RunForm::Branch::Outside});
  }
  rw.by_symbol["__SCT__*"] = std::move(sct);
  // static_cpu_has (asm/cpufeature.h): `jmp 6f` into the .altinstr_aux test, which
  // apply_alternatives always replaces: by NOPs when the CPU has the feature, else by a
  // jump to the function's own "no" label (recompute_jump: `jmp rel8` + NOP3 when it
  // reaches).
  rw.by_symbol[".altinstr_aux"] = {
      {"static_cpu_has: has the feature", {0xe9}, kNop5},
      {"static_cpu_has: lacks the feature", {0xe9}, {0xeb}, RunForm::Branch::Inside, 1, {0x0f, 0x1f, 0x00}},
      {"static_cpu_has: lacks the feature", {0xe9}, {0xe9}, RunForm::Branch::Inside}};
  return rw;
}

}  // namespace ls::kernel
