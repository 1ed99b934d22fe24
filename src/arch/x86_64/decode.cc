// x86-64 decoding with Zydis: operand fields and their PC-relative bias, instructions
// for messages, branches for run-pre matching.
#include <Zydis/Zydis.h>

#include "arch/x86_64/target.h"

namespace ls::arch::x86_64 {

std::vector<OperandField> X86_64::operand_fields(std::span<const uint8_t> code) const {
  std::vector<OperandField> fields;
  ZydisDecoder decoder;
  if (ZYAN_FAILED(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
    return fields;
  uint64_t pc = 0;
  while (pc < code.size()) {
    ZydisDecodedInstruction insn;
    if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&decoder, nullptr, code.data() + pc,
                                                  code.size() - pc, &insn)))
      break;
    uint64_t end = pc + insn.length;
    if (insn.raw.disp.size != 0) {
      uint64_t f = pc + insn.raw.disp.offset;
      fields.push_back({f, static_cast<int64_t>(end - f)});
    }
    for (const auto& imm : insn.raw.imm) {
      if (imm.size == 0) continue;
      uint64_t f = pc + imm.offset;
      fields.push_back({f, static_cast<int64_t>(end - f)});
    }
    pc = end;
  }
  return fields;
}

std::optional<Instruction> X86_64::instruction_at(std::span<const uint8_t> code, uint64_t offset) const {
  ZydisDecoder decoder;
  ZydisFormatter formatter;
  if (ZYAN_FAILED(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)) ||
      ZYAN_FAILED(ZydisFormatterInit(&formatter, ZYDIS_FORMATTER_STYLE_ATT)))
    return std::nullopt;
  uint64_t pc = 0;
  while (pc < code.size()) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (ZYAN_FAILED(ZydisDecoderDecodeFull(&decoder, code.data() + pc, code.size() - pc, &insn, ops)))
      return std::nullopt;
    if (offset < pc + insn.length) {
      char buf[256];
      if (ZYAN_FAILED(ZydisFormatterFormatInstruction(&formatter, &insn, ops, insn.operand_count_visible,
                                                      buf, sizeof buf, pc, nullptr)))
        return std::nullopt;
      return Instruction{pc, insn.length, buf};
    }
    pc += insn.length;
  }
  return std::nullopt;
}

std::optional<Decoded> decode_one(std::span<const uint8_t> code, uint64_t offset) {
  ZydisDecoder decoder;
  if (offset >= code.size() ||
      ZYAN_FAILED(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
    return std::nullopt;
  ZydisDecodedInstruction insn;
  if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&decoder, nullptr, code.data() + offset, code.size() - offset, &insn)))
    return std::nullopt;
  Decoded d;
  d.length = insn.length;
  d.mnemonic = static_cast<int>(insn.mnemonic);
  d.nop = insn.mnemonic == ZYDIS_MNEMONIC_NOP;
  // Direct relative jumps: jmp, the sixteen jcc and call (a function calling itself
  // through a local alias has no relocation either); not loop/jrcxz, which no
  // assembler would encode another way.
  const bool jump = insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR || insn.meta.category == ZYDIS_CATEGORY_COND_BR ||
                    insn.meta.category == ZYDIS_CATEGORY_CALL;
  const bool relative = (insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) != 0 && insn.raw.imm[0].size != 0 &&
                        insn.raw.imm[0].is_relative;
  if (jump && relative && insn.mnemonic != ZYDIS_MNEMONIC_JRCXZ && insn.mnemonic != ZYDIS_MNEMONIC_JECXZ &&
      insn.mnemonic != ZYDIS_MNEMONIC_LOOP && insn.mnemonic != ZYDIS_MNEMONIC_LOOPE &&
      insn.mnemonic != ZYDIS_MNEMONIC_LOOPNE && (insn.raw.imm[0].size == 8 || insn.raw.imm[0].size == 32)) {
    d.branch = true;
    d.short_branch = insn.raw.imm[0].size == 8;
    d.target = static_cast<int64_t>(offset + insn.length) + insn.raw.imm[0].value.s;
  }
  return d;
}

std::optional<Decoded> X86_64::decode(std::span<const uint8_t> code, uint64_t offset) const {
  return decode_one(code, offset);
}

}  // namespace ls::arch::x86_64
