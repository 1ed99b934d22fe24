// Architecture-specific knowledge behind a small interface, in the manner of lld's
// Target: an architecture classifies its relocation numbers into arch-neutral kinds and
// knows how an instruction places a PC-relative field. Everything else is shared.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "elf/object.h"

namespace ls::arch {

struct RelocInfo {
  elf::RelocKind kind;
  unsigned width;      // bytes patched
};

// x86-64 relocation numbers -> kind and width. Unknown numbers give nullopt.
std::optional<RelocInfo> x86_64_reloc(uint32_t type);

// The operand fields of the instructions in `code`, each with the distance from the field
// to the end of its instruction (the "bias"). The assembler folds that distance into a
// PC-relative addend (`lea .LC0(%rip)` has addend -4, `cmpb $0, x(%rip)` has -5), so the
// place a reference really points at is sym + addend + bias. Decoded once per function
// with Zydis, sorted by field offset. Decoding stops at the first undecodable byte.
struct OperandField {
  uint64_t offset;
  int64_t bias;
};
std::vector<OperandField> x86_64_operand_fields(std::span<const uint8_t> code);

// The instruction covering `offset` in `code` (decoded from the start), in AT&T syntax:
// {start offset, text}. nullopt if decoding fails before reaching it.
struct Instruction {
  uint64_t start;
  unsigned length;
  std::string text;
};
std::optional<Instruction> x86_64_instruction_at(std::span<const uint8_t> code, uint64_t offset);

// What run-pre matching needs to know of one instruction when the assembler may have
// encoded the same code differently: its length, whether it is alignment padding (a NOP
// of any length), and whether it is a direct jmp, jcc (rel8 or rel32) or call, and then
// where it goes, as an offset in `code` (may lie outside it). `mnemonic` tells a jcc's
// condition apart (Zydis's mnemonic number); equal for both widths of one branch.
struct Decoded {
  unsigned length = 0;
  bool nop = false;
  bool branch = false;
  bool short_branch = false;   // the rel8 form
  int mnemonic = 0;
  int64_t target = 0;
};
std::optional<Decoded> x86_64_decode(std::span<const uint8_t> code, uint64_t offset);

}  // namespace ls::arch
